// Transforms that act on each coordinate (or reorder coordinates) without a
// conditioner network: batch norm, NICE's diagonal scaling, permutations, and
// the preprocessing layers for discrete and bounded data.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "flows/transform.h"

namespace flow {

std::unique_ptr<Transform> make_batch_norm(ParamArena &params, ParamArena &buffers,
                                           const std::string &name, size_t dim,
                                           float momentum, float eps);
std::unique_ptr<Transform> make_diagonal_scale(ParamArena &params,
                                               const std::string &name, size_t dim);
// z[:, j] = x[:, perm[j]]
std::unique_ptr<Transform> make_permutation(Backend &backend, const std::vector<int> &perm);
std::unique_ptr<Transform> make_dequantize(size_t dim, float levels);
std::unique_ptr<Transform> make_logit(float alpha);

} // namespace flow
