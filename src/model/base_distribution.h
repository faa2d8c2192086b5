// The base (latent) distribution of a flow: log-density, its gradient, and
// sampling at a temperature (the base's scale multiplied by it). A base may
// have learnable parameters: it declares them in the model's arena (names
// "base.*") and receives the arena in every call, like a transform.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"
#include "model/param_arena.h"
#include "model/spec.h"

namespace flow {

class BaseDistribution {
public:
    virtual ~BaseDistribution() = default;
    // out[i] = log pi(z_i)
    virtual void log_prob(const ParamArena &params, const Tensor &z, Tensor &out) const = 0;
    // dz = dlogp[i] * grad_z log pi(z_i); parameter gradients accumulate into
    // params.grads().
    virtual void log_prob_backward(const ParamArena &params, const Tensor &z, const Tensor &dlogp,
                                   Tensor &dz) const = 0;
    // Draws from stream `offset` of the sampling streams of seed.
    virtual void sample(const ParamArena &params, Tensor &z, uint64_t seed, uint64_t offset,
                        float temperature) const = 0;
};

// spec.base: "normal" (standard), "logistic" (standard, as in NICE) or "mog"
// (spec.base_components diagonal Gaussians with learnable logits "base.logits"
// [K], means "base.means" [K, D] and log-scales "base.log_scales" [K, D];
// temperature scales the standard deviations, not the means).
std::unique_ptr<BaseDistribution> make_base_distribution(const ModelSpec &spec, ParamArena &params);

} // namespace flow
