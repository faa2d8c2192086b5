// The base (latent) distribution of a flow: log-density, its gradient, and
// sampling at a temperature (the base's scale multiplied by it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "backend/backend.h"

namespace flow {

class BaseDistribution {
public:
    virtual ~BaseDistribution() = default;
    // out[i] = log pi(z_i)
    virtual void log_prob(const Tensor &z, Tensor &out) const = 0;
    // dz = dlogp[i] * grad log pi(z_i)
    virtual void log_prob_backward(const Tensor &z, const Tensor &dlogp, Tensor &dz) const = 0;
    // Draws from stream `offset` of the sampling streams of seed.
    virtual void sample(Tensor &z, uint64_t seed, uint64_t offset, float temperature) const = 0;
};

// "normal" (standard) or "logistic" (standard, as in NICE).
std::unique_ptr<BaseDistribution> make_base_distribution(const std::string &type);

} // namespace flow
