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
    // context is [n, C] for a conditional model, else undefined; only the
    // "made_mog" base reads it.
    // out[i] = log pi(z_i)
    virtual void log_prob(const ParamArena &params, const Tensor &z, const Tensor &context,
                          Tensor &out) const = 0;
    // dz = dlogp[i] * grad_z log pi(z_i); parameter gradients accumulate into
    // params.grads(). Called right after log_prob() on the same z and
    // context (a base may reuse that pass).
    virtual void log_prob_backward(const ParamArena &params, const Tensor &z,
                                   const Tensor &context, const Tensor &dlogp,
                                   Tensor &dz) const = 0;
    // log_prob() then log_prob_backward(), for a caller whose dlogp does not
    // depend on out (a train step): a base may make both in one pass.
    virtual void log_prob_and_backward(const ParamArena &params, const Tensor &z,
                                       const Tensor &context, const Tensor &dlogp, Tensor &out,
                                       Tensor &dz) const {
        log_prob(params, z, context, out);
        log_prob_backward(params, z, context, dlogp, dz);
    }
    // Selects the masks of the passes that follow: draw = the training step
    // (>= 1) in flow_train_step, 0 for every other pass (the evaluation
    // masks: draw 0, or the ensemble of draws 0..K-1). Only an agnostic
    // "made_mog" base changes with it (its masks are a pure function of
    // (mask_seed, draw), so a resumed run draws the same masks).
    virtual void set_draw(uint64_t) const {}
    // Draws from stream `offset` of the sampling streams of seed.
    virtual void sample(const ParamArena &params, const Tensor &context, Tensor &z,
                        uint64_t seed, uint64_t offset, float temperature) const = 0;
};

// spec.base: "normal" (standard), "logistic" (standard, as in NICE) or "mog"
// (spec.base_components diagonal Gaussians with learnable logits "base.logits"
// [K], means "base.means" [K, D] and log-scales "base.log_scales" [K, D];
// temperature scales the standard deviations, not the means) or "made_mog"
// (MADE MoG: per dimension d a mixture of spec.base_components Gaussians
// whose logits, means and log-scales are outputs of one MADE "base.made"
// (spec.base_made) at z_<d (and the context): log_prob and its backward in
// one MADE pass, sampling in D passes; temperature scales the std).
std::unique_ptr<BaseDistribution> make_base_distribution(Backend &backend, const ModelSpec &spec,
                                                         ParamArena &params);

} // namespace flow
