#include "optim/optimizer.h"

#include <cmath>

#include "backend/backend.h"

namespace flow {

Optimizer::Optimizer(Backend &be, size_t param_count, OptimizerConfig config)
    : config_(std::move(config)), first_(be, {param_count}) {
    be.fill(first_, 0.0f);
    if (has_second()) {
        second_ = Tensor(be, {param_count});
        be.fill(second_, 0.0f);
    }
}

void Optimizer::step(ParamArena &params) {
    ++steps_;
    Tensor &p = params.values();
    Tensor &g = params.grads();
    Backend &be = p.backend();
    if (config_.clip_grad_norm > 0) {
        double norm = std::sqrt(be.sum_squares(g));
        if (norm > config_.clip_grad_norm) be.scale(g, (float)(config_.clip_grad_norm / norm));
    }
    float lr = (float)config_.lr, decay = (float)config_.weight_decay;
    if (config_.type == "sgd")
        be.sgd_update(p, g, first_, lr, (float)config_.momentum, decay, config_.nesterov,
                      steps_ == 1);
    else
        be.adam_update(p, g, first_, second_, lr, (float)config_.beta1, (float)config_.beta2,
                       (float)config_.eps, config_.type == "adam" ? decay : 0.0f,
                       config_.type == "adamw" ? decay : 0.0f, steps_);
}

} // namespace flow
