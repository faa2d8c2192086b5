// The extern "C" shim: checks arguments, runs the C++ core, and turns every
// exception into a flow_status plus this thread's error text. Nothing below
// this file knows about C types or status codes.
#include <cstring>
#include <new>
#include <string>

#include "backend/device.h"
#include "core/error.h"
#include "core/subnormals.h"
#include "flowlib.h"
#include "io/atomic_file.h"
#include "model/model.h"
#include "model/toy_data.h"

struct flow_model {
    std::unique_ptr<flow::Model> impl;
};

namespace {

thread_local std::string last_error;

// Model files larger than this are refused before reading them whole.
constexpr size_t max_model_file_bytes = size_t(1) << 34;

flow_status set_error(flow_status status, const std::string &message) {
    last_error = message;
    return status;
}

// Runs body, mapping whatever it throws to a status. The core leaves a model
// unchanged when it throws, so the model stays usable after any failure.
template <class Body> flow_status guarded(Body &&body) {
    try {
        const flow::FlushSubnormals flush;
        body();
        return FLOW_OK;
    } catch (const flow::Error &e) {
        return set_error((flow_status)e.status(), e.what());
    } catch (const std::bad_alloc &) {
        return set_error(FLOW_ERR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception &e) {
        return set_error(FLOW_ERR_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
        return set_error(FLOW_ERR_INTERNAL, "internal error: unknown exception");
    }
}

void require(const void *p, const char *name) {
    if (!p) flow::fail(flow::Status::invalid_argument, std::string(name) + " must not be NULL");
}

flow::Backend &backend(flow_device d) {
    if (d != FLOW_DEVICE_CPU && d != FLOW_DEVICE_CUDA)
        flow::fail(flow::Status::invalid_argument, "unknown device " + std::to_string((int)d));
    return flow::backend_for((flow::DeviceKind)d);
}

flow_status wrap(flow_model **out, std::unique_ptr<flow::Model> impl) {
    *out = new flow_model{std::move(impl)};
    return FLOW_OK;
}

// Copies s with its NUL into buf when it fits; *len gets the length.
void copy_out(const std::string &s, char *buf, size_t cap, size_t *len) {
    if (len) *len = s.size();
    if (!buf && cap) flow::fail(flow::Status::invalid_argument, "buf is NULL but cap is not 0");
    if (cap < s.size() + 1)
        flow::fail(flow::Status::buffer_too_small,
                   "buffer too small: " + std::to_string(s.size() + 1) + " bytes needed");
    std::memcpy(buf, s.c_str(), s.size() + 1);
}

} // namespace

extern "C" {

const char *flow_version_string(void) { return FLOWLIB_VERSION_STRING; }
uint32_t flow_version_number(void) { return FLOWLIB_VERSION_NUMBER; }

const char *flow_status_string(flow_status s) {
    switch (s) {
    case FLOW_OK: return "FLOW_OK";
    case FLOW_ERR_INVALID_ARGUMENT: return "FLOW_ERR_INVALID_ARGUMENT";
    case FLOW_ERR_SPEC: return "FLOW_ERR_SPEC";
    case FLOW_ERR_IO: return "FLOW_ERR_IO";
    case FLOW_ERR_FORMAT: return "FLOW_ERR_FORMAT";
    case FLOW_ERR_OUT_OF_MEMORY: return "FLOW_ERR_OUT_OF_MEMORY";
    case FLOW_ERR_DEVICE: return "FLOW_ERR_DEVICE";
    case FLOW_ERR_UNSUPPORTED: return "FLOW_ERR_UNSUPPORTED";
    case FLOW_ERR_NUMERIC: return "FLOW_ERR_NUMERIC";
    case FLOW_ERR_BUFFER_TOO_SMALL: return "FLOW_ERR_BUFFER_TOO_SMALL";
    case FLOW_ERR_INTERNAL: return "FLOW_ERR_INTERNAL";
    case FLOW_STATUS_MAX_ENUM_: break;
    }
    return "FLOW_ERR_UNKNOWN";
}

const char *flow_last_error(void) { return last_error.c_str(); }

int flow_device_available(flow_device d) {
    return (d == FLOW_DEVICE_CPU || d == FLOW_DEVICE_CUDA) &&
           flow::device_available((flow::DeviceKind)d);
}

flow_status flow_set_num_threads(int n) {
    return guarded([&] {
        if (n < 0) flow::fail(flow::Status::invalid_argument, "the thread count must be >= 0");
        flow::cpu_set_num_threads(n);
    });
}

flow_status flow_model_create(flow_model **out, const char *spec_json, flow_device device,
                              uint64_t seed) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(spec_json, "spec_json");
        wrap(out, flow::Model::create(backend(device), spec_json, seed));
    });
}

void flow_model_free(flow_model *m) { delete m; }

flow_status flow_model_clone(flow_model **out, const flow_model *m, flow_device device) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(m, "m");
        wrap(out, m->impl->clone(backend(device)));
    });
}

flow_status flow_model_spec(const flow_model *m, char *buf, size_t cap, size_t *len) {
    return guarded([&] {
        require(m, "m");
        copy_out(m->impl->spec_json(), buf, cap, len);
    });
}

size_t flow_model_dim(const flow_model *m) { return m ? m->impl->dim() : 0; }
size_t flow_model_context_dim(const flow_model *m) { return m ? m->impl->context_dim() : 0; }
size_t flow_model_param_count(const flow_model *m) { return m ? m->impl->param_count() : 0; }
flow_device flow_model_device(const flow_model *m) {
    return m ? (flow_device)m->impl->device() : FLOW_DEVICE_CPU;
}
uint64_t flow_model_step_count(const flow_model *m) { return m ? m->impl->step_count() : 0; }

static void require_count(const flow_model *m, size_t count) {
    if (count != m->impl->param_count())
        flow::fail(flow::Status::invalid_argument,
                   "count is " + std::to_string(count) + " but the model has " +
                       std::to_string(m->impl->param_count()) + " parameters");
}

flow_status flow_model_get_params(const flow_model *m, float *out, size_t count) {
    return guarded([&] {
        require(m, "m");
        require(out, "out");
        require_count(m, count);
        m->impl->get_params(out);
    });
}

flow_status flow_model_set_params(flow_model *m, const float *params, size_t count) {
    return guarded([&] {
        require(m, "m");
        require(params, "params");
        require_count(m, count);
        m->impl->set_params(params);
    });
}

flow_status flow_log_prob(flow_model *m, const float *x, const float *context, size_t n,
                          float *out_log_prob) {
    return guarded([&] {
        require(m, "m");
        require(x, "x");
        require(out_log_prob, "out_log_prob");
        m->impl->log_prob(x, context, n, out_log_prob);
    });
}

flow_status flow_sample(flow_model *m, size_t n, const float *context, float temperature,
                        uint64_t seed, float *out_x, float *out_log_prob) {
    return guarded([&] {
        require(m, "m");
        require(out_x, "out_x");
        m->impl->sample(n, context, temperature, seed, out_x, out_log_prob);
    });
}

flow_status flow_forward(flow_model *m, const float *x, const float *context, size_t n,
                         float *out_z, float *out_logdet) {
    return guarded([&] {
        require(m, "m");
        require(x, "x");
        require(out_z, "out_z");
        m->impl->forward(x, context, n, out_z, out_logdet);
    });
}

flow_status flow_inverse(flow_model *m, const float *z, const float *context, size_t n,
                         float *out_x, float *out_logdet) {
    return guarded([&] {
        require(m, "m");
        require(z, "z");
        require(out_x, "out_x");
        m->impl->inverse(z, context, n, out_x, out_logdet);
    });
}

flow_status flow_model_set_optimizer(flow_model *m, const char *optimizer_json) {
    return guarded([&] {
        require(m, "m");
        require(optimizer_json, "optimizer_json");
        m->impl->set_optimizer(optimizer_json);
    });
}

flow_status flow_train_step(flow_model *m, const float *x, const float *context, size_t n,
                            float *out_loss) {
    return guarded([&] {
        require(m, "m");
        require(x, "x");
        double loss = m->impl->train_step(x, context, n);
        if (out_loss) *out_loss = (float)loss;
    });
}

flow_status flow_loss_grad(flow_model *m, const float *x, const float *context, size_t n,
                           float *out_loss, float *out_param_grad, float *out_x_grad) {
    return guarded([&] {
        require(m, "m");
        require(x, "x");
        double loss = m->impl->loss_grad(x, context, n, out_param_grad, out_x_grad);
        if (out_loss) *out_loss = (float)loss;
    });
}

flow_status flow_model_save(const flow_model *m, const char *path) {
    return guarded([&] {
        require(m, "m");
        require(path, "path");
        std::vector<uint8_t> bytes = m->impl->save();
        flow::write_file_atomic(path, bytes.data(), bytes.size());
    });
}

flow_status flow_model_load(flow_model **out, const char *path, flow_device device) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(path, "path");
        std::vector<uint8_t> bytes = flow::read_file(path, max_model_file_bytes);
        try {
            wrap(out, flow::Model::load(backend(device), bytes.data(), bytes.size()));
        } catch (const flow::Error &e) {
            flow::fail(e.status(), std::string(path) + ": " + e.what());
        }
    });
}

flow_status flow_model_save_buffer(const flow_model *m, void *buf, size_t cap, size_t *len) {
    return guarded([&] {
        require(m, "m");
        std::vector<uint8_t> bytes = m->impl->save();
        if (len) *len = bytes.size();
        if (!buf && cap) flow::fail(flow::Status::invalid_argument, "buf is NULL but cap is not 0");
        if (cap < bytes.size())
            flow::fail(flow::Status::buffer_too_small,
                       "buffer too small: " + std::to_string(bytes.size()) + " bytes needed");
        std::memcpy(buf, bytes.data(), bytes.size());
    });
}

flow_status flow_model_load_buffer(flow_model **out, const void *buf, size_t len,
                                   flow_device device) {
    return guarded([&] {
        require(out, "out");
        *out = nullptr;
        require(buf, "buf");
        wrap(out, flow::Model::load(backend(device), (const uint8_t *)buf, len));
    });
}

flow_status flow_toy_data(const char *name, size_t n, uint64_t seed, float *out) {
    return guarded([&] {
        require(name, "name");
        require(out, "out");
        if (n == 0) flow::fail(flow::Status::invalid_argument, "n must be at least 1");
        flow::toy_data(name, n, seed, out);
    });
}

} // extern "C"
