// Compiled by the header_pedantic_cxx test with -std=c++17 -pedantic -Werror:
// the public header must be usable from C++ (extern "C", no warnings).
#include "flowlib.h"

static_assert(FLOWLIB_VERSION_NUMBER > 0, "version macro is defined");

int main() {
    flow_model *m = nullptr;
    flow_status (*create)(flow_model **, const char *, flow_device, uint64_t) =
        &flow_model_create;
    (void)m;
    (void)create;
    return FLOW_OK;
}
