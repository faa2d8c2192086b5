// Glow's steps for vectors (actnorm, invertible linear layer) and the classic
// flows of Rezende & Mohamed (planar, radial).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flows/transform.h"

namespace flow {

std::unique_ptr<Transform> make_actnorm(ParamArena &params, ParamArena &buffers,
                                        const std::string &name, size_t dim);
// z = x W^T. lu: W = P L (U + diag(sign * exp(log_s))), P[i, perm[i]] = 1,
// initialized from a random rotation drawn from Philox(seed, init_stream).
// Otherwise W is a plain matrix (same initial rotation).
std::unique_ptr<Transform> make_invertible_linear(Backend &backend, ParamArena &params,
                                                  ParamArena &buffers, const std::string &name,
                                                  size_t dim, bool lu,
                                                  const std::vector<int> &perm,
                                                  uint64_t init_stream);
std::unique_ptr<Transform> make_planar(ParamArena &params, const std::string &name, size_t dim);
std::unique_ptr<Transform> make_radial(ParamArena &params, const std::string &name, size_t dim);

} // namespace flow
