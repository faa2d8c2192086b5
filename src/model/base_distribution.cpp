#include "model/base_distribution.h"

#include "core/error.h"

namespace flow {

namespace {

// The stream that sampling draws from: one per purpose, so a seed used for
// sampling never reproduces the dequantization noise.
constexpr uint64_t sample_stream = 0x73616d706c650000ull;

class StandardNormal final : public BaseDistribution {
public:
    void log_prob(const Tensor &z, Tensor &out) const override {
        z.backend().normal_log_prob(z, out);
    }
    void log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) const override {
        z.backend().normal_log_prob_backward(z, dlogp, dz);
    }
    void sample(Tensor &z, uint64_t seed, uint64_t offset, float temperature) const override {
        z.backend().fill_normal(z, seed, sample_stream + offset, temperature);
    }
};

class StandardLogistic final : public BaseDistribution {
public:
    void log_prob(const Tensor &z, Tensor &out) const override {
        z.backend().logistic_log_prob(z, out);
    }
    void log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) const override {
        z.backend().logistic_log_prob_backward(z, dlogp, dz);
    }
    void sample(Tensor &z, uint64_t seed, uint64_t offset, float temperature) const override {
        z.backend().fill_logistic(z, seed, sample_stream + offset, temperature);
    }
};

} // namespace

std::unique_ptr<BaseDistribution> make_base_distribution(const std::string &type) {
    if (type == "normal") return std::make_unique<StandardNormal>();
    if (type == "logistic") return std::make_unique<StandardLogistic>();
    fail(Status::spec, "spec: base: unknown type \"" + type + "\"");
}

} // namespace flow
