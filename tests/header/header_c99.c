/* Compiled by the header_pedantic_c test with -std=c99 -pedantic -Werror:
 * the public header must be plain, warning-free C99. */
#include "flowlib.h"

int main(void) {
    flow_model *m = NULL;
    flow_status s = FLOW_OK;
    flow_device d = FLOW_DEVICE_CPU;
    (void)m;
    (void)s;
    (void)d;
    return FLOWLIB_VERSION_NUMBER > 0 ? 0 : 1;
}
