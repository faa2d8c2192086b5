/* Installed-library smoke test (ctest install_consumers): built once with
 * pkg-config alone and once through find_package(flowlib). Exits nonzero on
 * any failure. */
#include <flowlib.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

static int fail(const char *what) {
    fprintf(stderr, "install consumer: %s failed: %s\n", what, flow_last_error());
    return 1;
}

int main(void) {
    const char *spec = "{\"preset\":\"realnvp\",\"dim\":2,\"layers\":2,\"hidden\":[8]}";
    const float x[4] = {0.5f, -0.25f, 1.0f, 2.0f};
    float lp[2] = {0.0f, 0.0f};
    flow_model *m = NULL;
    flow_status s;

    if (flow_version_number() != FLOWLIB_VERSION_NUMBER) {
        fprintf(stderr, "install consumer: header %d but library %u\n",
                FLOWLIB_VERSION_NUMBER, (unsigned)flow_version_number());
        return 1;
    }
    if (strcmp(flow_version_string(), FLOWLIB_VERSION_STRING) != 0) {
        fprintf(stderr, "install consumer: header \"%s\" but library \"%s\"\n",
                FLOWLIB_VERSION_STRING, flow_version_string());
        return 1;
    }

    s = flow_model_create(&m, spec, FLOW_DEVICE_CPU, 42);
    if (s != FLOW_OK) return fail("flow_model_create");
    if (flow_model_dim(m) != 2) {
        flow_model_free(m);
        return fail("flow_model_dim");
    }
    s = flow_log_prob(m, x, NULL, 2, lp);
    flow_model_free(m);
    if (s != FLOW_OK) return fail("flow_log_prob");
    if (!isfinite(lp[0]) || !isfinite(lp[1])) {
        fprintf(stderr, "install consumer: log_prob not finite (%g, %g)\n", lp[0], lp[1]);
        return 1;
    }
    printf("flowlib %s: log_prob = %g, %g\n", flow_version_string(), lp[0], lp[1]);
    return 0;
}
