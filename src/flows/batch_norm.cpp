// Batch normalization as an invertible layer (RealNVP, section 3.7): training
// passes normalize with the batch's statistics and back-propagate through
// them; every other pass uses the running averages.
#include "flows/elementwise.h"

namespace flow {

namespace {

class BatchNorm final : public Transform {
public:
    BatchNorm(ParamArena &params, ParamArena &buffers, const std::string &name,
              size_t dim, float momentum, float eps)
        : dim_(dim), momentum_(momentum), eps_(eps),
          log_gamma_(params.declare(name + ".log_gamma", {dim}, Init::zeros)),
          beta_(params.declare(name + ".beta", {dim}, Init::zeros)),
          running_mean_(buffers.declare(name + ".running_mean", {dim}, Init::zeros)),
          running_var_(buffers.declare(name + ".running_var", {dim}, Init::ones)) {}

    void forward(const ParamArena &params, const ParamArena &buffers, const Tensor &x,
                 const Tensor &, Tensor &z, Tensor &logdet, const Pass &pass) override {
        Backend &be = x.backend();
        batch_stats_ = pass.train;
        x_ = x;
        if (batch_stats_) {
            batch_mean_.ensure(be, {dim_});
            batch_var_.ensure(be, {dim_});
            be.batch_norm_stats(x, batch_mean_, batch_var_);
            batch_rows_ = x.rows();
        }
        be.batch_norm_forward(x, mean(buffers), var(buffers), params.value(log_gamma_),
                              params.value(beta_), eps_, z, logdet);
    }

    bool trains_rows_apart(const ParamArena &) override { return false; }

    void inverse(const ParamArena &params, const ParamArena &buffers, const Tensor &z,
                 const Tensor &, Tensor &x, Tensor &logdet) override {
        z.backend().batch_norm_inverse(z, buffers.value(running_mean_),
                                       buffers.value(running_var_),
                                       params.value(log_gamma_), params.value(beta_),
                                       eps_, x, logdet);
    }

    void backward(const ParamArena &params, const ParamArena &buffers, const Tensor &dz,
                  const Tensor &dlogdet, Tensor &dx) override {
        Backend &be = dz.backend();
        Tensor dlog_gamma = params.grad(log_gamma_), dbeta = params.grad(beta_);
        be.batch_norm_backward(x_, mean(buffers), var(buffers), params.value(log_gamma_), eps_,
                               batch_stats_, dz, dlogdet, dx, dlog_gamma, dbeta);
    }

    void commit_train_step(ParamArena &buffers) override {
        Tensor running_mean = buffers.value(running_mean_);
        Tensor running_var = buffers.value(running_var_);
        batch_mean_.backend().batch_norm_update_running(batch_mean_, batch_var_, momentum_, batch_rows_,
                                                  running_mean, running_var);
    }

private:
    // The statistics the last forward() normalized with.
    Tensor mean(const ParamArena &buffers) const {
        return batch_stats_ ? batch_mean_ : buffers.value(running_mean_);
    }
    Tensor var(const ParamArena &buffers) const {
        return batch_stats_ ? batch_var_ : buffers.value(running_var_);
    }

    size_t dim_;
    float momentum_, eps_;
    size_t log_gamma_, beta_, running_mean_, running_var_;
    bool batch_stats_ = false;
    size_t batch_rows_ = 0;
    Tensor x_, batch_mean_, batch_var_;
};

} // namespace

std::unique_ptr<Transform> make_batch_norm(ParamArena &params, ParamArena &buffers,
                                           const std::string &name, size_t dim,
                                           float momentum, float eps) {
    return std::make_unique<BatchNorm>(params, buffers, name, dim, momentum, eps);
}

} // namespace flow
