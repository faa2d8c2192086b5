#include "model/base_distribution.h"

#include "core/error.h"

namespace flow {

namespace {

// The stream that sampling draws from: one per purpose, so a seed used for
// sampling never reproduces the dequantization noise.
constexpr uint64_t sample_stream = 0x73616d706c650000ull;

class StandardNormal final : public BaseDistribution {
public:
    void log_prob(const ParamArena &, const Tensor &z, Tensor &out) const override {
        z.backend().normal_log_prob(z, out);
    }
    void log_prob_backward(const ParamArena &, const Tensor &z, const Tensor &dlogp,
                           Tensor &dz) const override {
        z.backend().normal_log_prob_backward(z, dlogp, dz);
    }
    void sample(const ParamArena &, Tensor &z, uint64_t seed, uint64_t offset,
                float temperature) const override {
        z.backend().fill_normal(z, seed, sample_stream + offset, temperature);
    }
};

class StandardLogistic final : public BaseDistribution {
public:
    void log_prob(const ParamArena &, const Tensor &z, Tensor &out) const override {
        z.backend().logistic_log_prob(z, out);
    }
    void log_prob_backward(const ParamArena &, const Tensor &z, const Tensor &dlogp,
                           Tensor &dz) const override {
        z.backend().logistic_log_prob_backward(z, dlogp, dz);
    }
    void sample(const ParamArena &, Tensor &z, uint64_t seed, uint64_t offset,
                float temperature) const override {
        z.backend().fill_logistic(z, seed, sample_stream + offset, temperature);
    }
};

// Mixture of K diagonal Gaussians. Initialization: equal weights, unit
// scales, means uniform in [-1, 1]^D (from the model seed), so the
// components start apart.
class MixtureOfGaussians final : public BaseDistribution {
public:
    MixtureOfGaussians(ParamArena &params, size_t components, size_t dim)
        : logits_(params.declare("base.logits", {components}, Init::zeros)),
          means_(params.declare("base.means", {components, dim}, Init::uniform, 1.0f)),
          log_scales_(params.declare("base.log_scales", {components, dim}, Init::zeros)) {}

    void log_prob(const ParamArena &params, const Tensor &z, Tensor &out) const override {
        z.backend().mog_log_prob(z, params.value(logits_), params.value(means_),
                                 params.value(log_scales_), out);
    }
    void log_prob_backward(const ParamArena &params, const Tensor &z, const Tensor &dlogp,
                           Tensor &dz) const override {
        Tensor dlogits = params.grad(logits_), dmeans = params.grad(means_),
               dlog_scales = params.grad(log_scales_);
        z.backend().mog_log_prob_backward(z, params.value(logits_), params.value(means_),
                                          params.value(log_scales_), dlogp, dz, dlogits, dmeans,
                                          dlog_scales);
    }
    void sample(const ParamArena &params, Tensor &z, uint64_t seed, uint64_t offset,
                float temperature) const override {
        z.backend().mog_sample(z, params.value(logits_), params.value(means_),
                               params.value(log_scales_), seed, sample_stream + offset,
                               temperature);
    }

private:
    size_t logits_, means_, log_scales_;
};

} // namespace

std::unique_ptr<BaseDistribution> make_base_distribution(const ModelSpec &spec, ParamArena &params) {
    if (spec.base == "normal") return std::make_unique<StandardNormal>();
    if (spec.base == "logistic") return std::make_unique<StandardLogistic>();
    if (spec.base == "mog")
        return std::make_unique<MixtureOfGaussians>(params, spec.base_components, spec.dim);
    fail(Status::spec, "spec: base: unknown type \"" + spec.base + "\"");
}

} // namespace flow
