#include "model/model.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "backend/cpu/cpu_kernels.h"
#include "core/error.h"
#include "flows/factory.h"

namespace flow {

namespace {

// Rows per chunk for the passes that do not train, so workspaces stay bounded
// whatever n the caller passes.
constexpr size_t chunk_rows = 4096;
// On one CPU thread, evaluation passes go through the transforms in blocks of
// this many rows, so a block's intermediates (a few [rows, hidden] matrices
// per conditioner) stay in the L2 cache instead of streaming through memory:
// ~1.2x faster log_prob and sampling for 4096-row batches. With more threads
// whole chunks keep every thread busy. Results do not change: these passes
// treat rows independently, and random numbers are still drawn per
// chunk_rows chunk.
constexpr size_t cpu_block_rows = 512;

// Dequantization draws its noise per pass (counter = element of the pass), so
// forward passes of such models keep whole chunks.
bool draws_noise(const ModelSpec &spec) {
    for (const TransformSpec &t : spec.transforms)
        if (t.type == "dequantize") return true;
    return false;
}

// Dequantization noise streams: training step k uses stream k (k >= 1); the
// fixed noise of evaluation passes lives far above.
constexpr uint64_t eval_noise_stream = 1ull << 62;

void check_finite(const float *v, size_t rows, size_t cols, const char *what) {
    // The vectorized scan of the CPU kernels (host memory, as here) first;
    // the element loop only to name the culprit.
    if (cpu_kernels::all_finite_range(v, rows * cols)) return;
    for (size_t k = 0; k < rows * cols; ++k)
        if (!std::isfinite(v[k]))
            fail(Status::invalid_argument, std::string(what) + " holds a non-finite value (row " +
                                               std::to_string(k / cols) + ", column " +
                                               std::to_string(k % cols) + ")");
}

// The undefined tensor passed as the context of models without one.
const Tensor &no_tensor() {
    static const Tensor none;
    return none;
}

} // namespace

Model::Model(Backend &be, ModelSpec spec, uint64_t seed)
    : backend_(be), spec_(std::move(spec)), spec_json_(model_spec_json(spec_)), seed_(seed) {
    for (size_t k = 0; k < spec_.transforms.size(); ++k)
        transforms_.push_back(make_transform(be, params_, buffers_, spec_, k));
    base_ = make_base_distribution(be, spec_, params_);
    // Two more than the transforms: evaluation passes ping-pong in acts_[1..2].
    acts_.resize(std::max<size_t>(transforms_.size() + 1, 3));
}

std::unique_ptr<Model> Model::create(Backend &be, const std::string &spec_json, uint64_t seed) {
    std::unique_ptr<Model> m(new Model(be, parse_model_spec(spec_json, seed), seed));
    m->params_.allocate(be, seed);
    m->buffers_.allocate(be, seed);
    be.synchronize();
    return m;
}

void Model::get_params(float *out) const { backend_.download(params_.values(), out); }

void Model::set_params(const float *values) {
    check_finite(values, 1, params_.count(), "parameters");
    backend_.upload(params_.values(), values);
    backend_.synchronize();
}

void Model::check_inputs(const float *x, const float *context, size_t n, bool data) const {
    if (n == 0) fail(Status::invalid_argument, "n must be at least 1");
    if (spec_.context_dim == 0 && context)
        fail(Status::invalid_argument, "this model has no context (context_dim is 0): pass NULL");
    if (spec_.context_dim > 0 && !context)
        fail(Status::invalid_argument, "this model needs a context of " +
                                           std::to_string(spec_.context_dim) + " values per row");
    if (context) check_finite(context, n, spec_.context_dim, "context");
    if (!x) return;
    check_finite(x, n, spec_.dim, data ? "data" : "latent");
    if (data && !transforms_.empty()) transforms_.front()->check_data(x, n * spec_.dim);
}

void Model::upload_rows(const float *x, const float *context, size_t begin, size_t rows) {
    if (x) {
        input_.ensure(backend_, {rows, spec_.dim});
        backend_.upload(input_, x + begin * spec_.dim);
    }
    if (context) {
        context_.ensure(backend_, {rows, spec_.context_dim});
        backend_.upload(context_, context + begin * spec_.context_dim);
    }
}

// input_ -> z through every transform; logdet_ gets the total log-det.
const Tensor &Model::forward_pass(const Pass &pass) {
    size_t n = input_.rows();
    Tensor none;
    const Tensor &context = spec_.context_dim ? context_ : none;
    logdet_.ensure(backend_, {n});
    backend_.fill(logdet_, 0.0f);
    const Tensor *in = &input_;
    for (size_t k = 0; k < transforms_.size(); ++k) {
        // Training keeps every intermediate for backward; evaluation ping-pongs.
        Tensor &out = pass.train ? acts_[k + 1] : acts_[1 + k % 2];
        out.ensure(backend_, {n, spec_.dim});
        transforms_[k]->forward(params_, buffers_, *in, context, out, logdet_, pass);
        in = &out;
    }
    return *in;
}

// z -> x through every transform backwards; logdet_ gets log|det dx/dz|.
const Tensor &Model::inverse_pass(const Tensor &z) {
    size_t n = z.rows();
    Tensor none;
    const Tensor &context = spec_.context_dim ? context_ : none;
    logdet_.ensure(backend_, {n});
    backend_.fill(logdet_, 0.0f);
    const Tensor *in = &z;
    for (size_t k = transforms_.size(); k-- > 0;) {
        Tensor &out = acts_[1 + k % 2];
        out.ensure(backend_, {n, spec_.dim});
        transforms_[k]->inverse(params_, buffers_, *in, context, out, logdet_);
        in = &out;
    }
    return *in;
}

// Rows per evaluation pass: cache-sized blocks on the CPU where that changes
// no result, whole chunks otherwise.
static size_t eval_rows(const Backend &be, const ModelSpec &spec, bool forward) {
    if (be.kind() != DeviceKind::cpu || omp_get_max_threads() > 1 ||
        (forward && draws_noise(spec)))
        return chunk_rows;
    return cpu_block_rows;
}

void Model::log_prob(const float *x, const float *context, size_t n, float *out) {
    check_inputs(x, context, n, true);
    base_->set_draw(0);
    const size_t step = eval_rows(backend_, spec_, true);
    for (size_t begin = 0; begin < n; begin += step) {
        size_t rows = std::min(step, n - begin);
        upload_rows(x, context, begin, rows);
        const Tensor &z = forward_pass({false, seed_, eval_noise_stream + begin});
        log_prob_.ensure(backend_, {rows});
        base_->log_prob(params_, z, (spec_.context_dim ? context_ : no_tensor()), log_prob_);
        backend_.axpy(1.0f, logdet_, log_prob_);
        backend_.download(log_prob_, out + begin);
    }
}

void Model::forward(const float *x, const float *context, size_t n, float *out_z,
                    float *out_logdet) {
    check_inputs(x, context, n, true);
    const size_t step = eval_rows(backend_, spec_, true);
    for (size_t begin = 0; begin < n; begin += step) {
        size_t rows = std::min(step, n - begin);
        upload_rows(x, context, begin, rows);
        backend_.download(forward_pass({false, seed_, eval_noise_stream + begin}),
                          out_z + begin * spec_.dim);
        if (out_logdet) backend_.download(logdet_, out_logdet + begin);
    }
}

void Model::inverse(const float *z, const float *context, size_t n, float *out_x,
                    float *out_logdet) {
    check_inputs(z, context, n, false);
    const size_t step = eval_rows(backend_, spec_, false);
    for (size_t begin = 0; begin < n; begin += step) {
        size_t rows = std::min(step, n - begin);
        upload_rows(z, context, begin, rows);
        backend_.download(inverse_pass(input_), out_x + begin * spec_.dim);
        if (out_logdet) backend_.download(logdet_, out_logdet + begin);
    }
}

void Model::sample(size_t n, const float *context, float temperature, uint64_t seed,
                   float *out_x, float *out_log_prob) {
    check_inputs(nullptr, context, n, false);
    if (!(temperature > 0.0f) || !std::isfinite(temperature))
        fail(Status::invalid_argument, "temperature must be a finite number > 0");
    base_->set_draw(0);
    for (size_t begin = 0; begin < n; begin += chunk_rows) {
        size_t rows = std::min(chunk_rows, n - begin);
        upload_rows(nullptr, context, begin, rows);
        input_.ensure(backend_, {rows, spec_.dim});
        base_->sample(params_, (spec_.context_dim ? context_ : no_tensor()), input_, seed, begin, temperature);
        // The chunk's noise is drawn; the transforms then run block by block
        // (context_ points at the block's rows meanwhile).
        const Tensor chunk_context = context_;
        const size_t step = eval_rows(backend_, spec_, false);
        for (size_t b = 0; b < rows; b += step) {
            const size_t r = std::min(step, rows - b);
            const Tensor z = r == rows ? input_ : input_.row_block(b, r);
            if (spec_.context_dim) context_ = r == rows ? chunk_context : chunk_context.row_block(b, r);
            const Tensor &x = inverse_pass(z);
            backend_.download(x, out_x + (begin + b) * spec_.dim);
            if (out_log_prob) {
                // log p(x) = log pi(z) - log|det dx/dz|
                log_prob_.ensure(backend_, {r});
                base_->log_prob(params_, z, (spec_.context_dim ? context_ : no_tensor()), log_prob_);
                backend_.axpy(-1.0f, logdet_, log_prob_);
                backend_.download(log_prob_, out_log_prob + begin + b);
            }
        }
        context_ = chunk_context;
    }
}

// The mean NLL of the batch in training mode, with every parameter gradient
// in params_.grads() and the data gradient in *data_grad_. Nothing else
// changes.
double Model::loss_and_gradients(const float *x, const float *context, size_t n,
                                 uint64_t stream) {
    check_inputs(x, context, n, true);
    upload_rows(x, context, 0, n);
    // Agnostic MADE bases: training step k uses the masks of draw k;
    // flow_loss_grad (the evaluation stream) the evaluation masks (draw 0,
    // or the ensemble of draws 0..K-1).
    base_->set_draw(stream < eval_noise_stream ? stream : 0);
    const Tensor &z = forward_pass({true, seed_, stream});

    log_prob_.ensure(backend_, {n});
    base_->log_prob(params_, z, (spec_.context_dim ? context_ : no_tensor()), log_prob_);
    backend_.axpy(1.0f, logdet_, log_prob_);
    double loss = -backend_.sum(log_prob_) / (double)n;
    if (!std::isfinite(loss))
        fail(Status::numeric, "the loss is not finite (" + std::to_string(loss) + ")");

    // loss = -mean(log pi(z) + sum of logdets): every log term gets -1/n.
    dlog_.ensure(backend_, {n});
    backend_.fill(dlog_, -1.0f / (float)n);
    backend_.fill(params_.grads(), 0.0f);
    grad_a_.ensure(backend_, {n, spec_.dim});
    base_->log_prob_backward(params_, z, (spec_.context_dim ? context_ : no_tensor()), dlog_, grad_a_);
    Tensor *dz = &grad_a_, *dx = &grad_b_;
    for (size_t k = transforms_.size(); k-- > 0;) {
        dx->ensure(backend_, {n, spec_.dim});
        transforms_[k]->backward(params_, buffers_, *dz, dlog_, *dx);
        std::swap(dz, dx);
    }
    if (!backend_.all_finite(params_.grads()))
        fail(Status::numeric, "a parameter gradient is not finite");
    data_grad_ = dz;
    return loss;
}

double Model::train_step(const float *x, const float *context, size_t n) {
    double loss = loss_and_gradients(x, context, n, steps_ + 1);
    // Made only now: a first step that fails leaves the model as it was.
    if (!optimizer_) optimizer_ = std::make_unique<Optimizer>(backend_, param_count(), OptimizerConfig());
    optimizer_->step(params_);
    for (auto &t : transforms_) {
        t->commit_train_step(buffers_);
        t->commit_train_step_params(params_);
    }
    ++steps_;
    backend_.synchronize();
    return loss;
}

double Model::loss_grad(const float *x, const float *context, size_t n, float *param_grad,
                        float *x_grad) {
    double loss = loss_and_gradients(x, context, n, eval_noise_stream);
    if (param_grad) backend_.download(params_.grads(), param_grad);
    if (x_grad) backend_.download(*data_grad_, x_grad);
    return loss;
}

void Model::set_optimizer(const std::string &json) {
    optimizer_ = std::make_unique<Optimizer>(backend_, param_count(), parse_optimizer_config(json));
    backend_.synchronize();
}

} // namespace flow
