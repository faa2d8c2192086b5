// Coupling layers on a binary mask (Dinh et al.): the masked part passes
// through and conditions an MLP that moves the rest. Additive coupling is
// NICE's; affine coupling with a tanh-bounded log-scale is RealNVP's.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flows/transform.h"
#include "nn/mlp.h"

namespace flow {

struct CouplingConfig {
    bool affine;
    std::vector<float> mask; // 1 = passed through unchanged, per dimension
    size_t context_dim;
    std::vector<size_t> hidden;
    Activation activation;
};

std::unique_ptr<Transform> make_coupling(Backend &backend, ParamArena &params,
                                         const std::string &name,
                                         const CouplingConfig &config);

} // namespace flow
