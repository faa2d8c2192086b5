// Actnorm (Glow, Kingma & Dhariwal 2018, section 3.1) for vectors:
//   z = (x + bias) * exp(log_scale),  logdet[i] += sum_j log_scale[j].
// Data-dependent initialization: the first training forward pass of a layer
// whose buffer "<name>.initialized" is 0 runs with bias = -mean and
// log_scale = -log(std) of that batch (per dimension; the batch statistics
// are treated as constants, as in Glow), so its output has zero mean and unit
// variance. Only once the train step has succeeded does commit move the
// parameters by (init - their value at that forward pass) -- as if they had
// been set to the init before the step -- and set the flag, which is saved
// with the model. A failed step changes nothing. Other passes (log_prob,
// sampling, and flow_loss_grad once initialized) use the parameters as they
// are; before the first step the layer is the identity.
#include <cmath>
#include <vector>

#include "flows/glow.h"

namespace flow {

namespace {

class ActNorm final : public Transform {
public:
    ActNorm(ParamArena &params, ParamArena &buffers, const std::string &name, size_t dim)
        : dim_(dim), bias_(params.declare(name + ".bias", {dim}, Init::zeros)),
          log_scale_(params.declare(name + ".log_scale", {dim}, Init::zeros)),
          initialized_(buffers.declare(name + ".initialized", {1}, Init::zeros)) {}

    void forward(const ParamArena &params, const ParamArena &buffers, const Tensor &x,
                 const Tensor &, Tensor &z, Tensor &logdet, const Pass &pass) override {
        Backend &be = x.backend();
        Tensor bias = params.value(bias_), log_scale = params.value(log_scale_);
        pending_ = false;
        if (pass.train && !is_initialized(buffers)) {
            data_init(be, x);
            // Remember where the parameters were, so that commit can move
            // them to the init whatever the optimizer did meanwhile.
            old_bias_.ensure(be, {dim_});
            old_log_scale_.ensure(be, {dim_});
            be.copy(bias, old_bias_);
            be.copy(log_scale, old_log_scale_);
            bias = init_bias_;
            log_scale = init_log_scale_;
            pending_ = true;
        }
        // x + bias: kept for backward when training, built in z otherwise.
        Tensor &shifted = pass.train ? shifted_ : z;
        shifted.ensure(be, x.shape());
        if (&shifted != &x) be.copy(x, shifted);
        be.add_row_vector(shifted, bias);
        be.scale_exp(shifted, log_scale, 1.0f, z);
        be.add_vector_sum(logdet, log_scale, 1.0f);
        used_log_scale_ = log_scale;
    }

    // Once initialized: the initializing step uses the batch's statistics.
    bool trains_rows_apart(const ParamArena &buffers) override { return is_initialized(buffers); }

    // Elementwise (scale_exp may write over its input).
    bool in_place() const override { return true; }

    void inverse(const ParamArena &params, const ParamArena &, const Tensor &z,
                 const Tensor &, Tensor &x, Tensor &logdet) override {
        Backend &be = z.backend();
        Tensor log_scale = params.value(log_scale_);
        neg_bias_.ensure(be, {dim_});
        be.copy(params.value(bias_), neg_bias_);
        be.scale(neg_bias_, -1.0f);
        be.scale_exp(z, log_scale, -1.0f, x);
        be.add_row_vector(x, neg_bias_);
        be.add_vector_sum(logdet, log_scale, -1.0f);
    }

    void backward(const ParamArena &params, const ParamArena &, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        Tensor dbias = params.grad(bias_), dlog_scale = params.grad(log_scale_);
        be.scale_exp_backward(shifted_, used_log_scale_, dz, dlogdet, dx, dlog_scale);
        // d(x + bias)/d bias = 1: dbias[j] += sum_i dx[i, j]
        be.sum_rows(dx, dbias, true);
    }

    void commit_train_step(ParamArena &buffers) override {
        if (!pending_) return;
        Tensor flag = buffers.value(initialized_);
        flag.backend().fill(flag, 1.0f);
        known_initialized_ = true;
    }

    void commit_train_step_params(ParamArena &params) override {
        if (!pending_) return;
        pending_ = false;
        Tensor bias = params.value(bias_), log_scale = params.value(log_scale_);
        Backend &be = bias.backend();
        be.axpy(1.0f, init_bias_, bias);
        be.axpy(-1.0f, old_bias_, bias);
        be.axpy(1.0f, init_log_scale_, log_scale);
        be.axpy(-1.0f, old_log_scale_, log_scale);
    }

private:
    bool is_initialized(const ParamArena &buffers) {
        if (known_initialized_) return true;
        float flag = 0.0f;
        buffers.value(initialized_).backend().download(buffers.value(initialized_), &flag);
        known_initialized_ = flag != 0.0f;
        return known_initialized_;
    }

    // init_bias_ = -mean, init_log_scale_ = -log(std) of the batch (std = 1
    // for a batch of one row; std floored at 1e-6 for constant columns).
    void data_init(Backend &be, const Tensor &x) {
        mean_.ensure(be, {dim_});
        var_.ensure(be, {dim_});
        be.batch_norm_stats(x, mean_, var_);
        std::vector<float> mean(dim_), var(dim_), b(dim_), s(dim_);
        be.download(mean_, mean.data());
        be.download(var_, var.data());
        for (size_t j = 0; j < dim_; ++j) {
            double sd = x.rows() > 1 ? std::sqrt((double)var[j]) : 1.0;
            b[j] = -mean[j];
            s[j] = (float)-std::log(std::max(sd, 1e-6));
        }
        init_bias_.ensure(be, {dim_});
        init_log_scale_.ensure(be, {dim_});
        be.upload(init_bias_, b.data());
        be.upload(init_log_scale_, s.data());
    }

    size_t dim_;
    size_t bias_, log_scale_, initialized_;
    bool known_initialized_ = false, pending_ = false;
    Tensor shifted_, used_log_scale_, neg_bias_, mean_, var_;
    Tensor init_bias_, init_log_scale_, old_bias_, old_log_scale_;
};

} // namespace

std::unique_ptr<Transform> make_actnorm(ParamArena &params, ParamArena &buffers,
                                        const std::string &name, size_t dim) {
    return std::make_unique<ActNorm>(params, buffers, name, dim);
}

} // namespace flow
