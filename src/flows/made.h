// Gaussian autoregressive layers on a MADE conditioner (MAF, IAF).
//
// With [mu, alpha] = MADE(u) (mu_d, alpha_d depending on u_<d in the order):
//   "maf":  forward  z = (x - mu(x)) * exp(-alpha(x))   ONE pass (fast)
//           inverse  x = z * exp(alpha(x)) + mu(x)       D sequential passes
//   "iaf":  forward  z = x * exp(alpha(z)) + mu(z)       D sequential passes
//           inverse  x = (z - mu(z)) * exp(-alpha(z))    ONE pass (fast)
// So with the same weights IAF's forward is MAF's inverse and IAF's inverse
// is MAF's forward. Forward = data -> latent, so a MAF model has a fast
// log_prob / train_step and a D-pass sample; an IAF model the opposite.
//
// IAF's backward (training by maximum likelihood through the slow direction)
// differentiates the D-pass solve implicitly: with F(z) = x the MAF map, it
// solves J^T v = g (J = dF/dz, triangular) by D - 1 fixed-point sweeps, each
// one MADE backward pass, then one more MADE backward for the parameters.
#pragma once

#include <memory>
#include <string>

#include "flows/transform.h"
#include "nn/made.h"

namespace flow {

std::unique_ptr<Transform> make_made_affine(Backend &backend, ParamArena &params,
                                            const std::string &name, const MadeConfig &made,
                                            bool iaf);

} // namespace flow
