#include "flows/factory.h"

#include "core/error.h"
#include "flows/coupling.h"
#include "flows/elementwise.h"
#include "flows/glow.h"
#include "flows/made.h"

namespace flow {

std::unique_ptr<Transform> make_transform(Backend &be, ParamArena &params,
                                          ParamArena &buffers, const ModelSpec &spec,
                                          size_t index) {
    const TransformSpec &t = spec.transforms[index];
    std::string name = "t" + std::to_string(index);
    if (t.type == "affine_coupling" || t.type == "additive_coupling")
        return make_coupling(be, params, name,
                             {t.type == "affine_coupling", t.mask, spec.context_dim, t.hidden,
                              t.activation});
    if (t.type == "batch_norm")
        return make_batch_norm(params, buffers, name, spec.dim, (float)t.momentum, (float)t.eps);
    if (t.type == "diagonal_scale") return make_diagonal_scale(params, name, spec.dim);
    if (t.type == "reverse" || t.type == "permutation") return make_permutation(be, t.perm);
    if (t.type == "dequantize") return make_dequantize(spec.dim, (float)t.levels);
    if (t.type == "logit") return make_logit((float)t.alpha);
    if (t.type == "made_affine")
        return make_made_affine(be, params, name,
                                {t.order, t.hidden, t.activation, spec.context_dim, t.mask_seed, 2},
                                t.direction == "iaf");
    if (t.type == "actnorm") return make_actnorm(params, buffers, name, spec.dim);
    if (t.type == "invertible_linear")
        return make_invertible_linear(be, params, buffers, name, spec.dim, t.lu, t.perm,
                                      0x696e766c00000000ull + index);
    if (t.type == "planar") return make_planar(params, name, spec.dim);
    if (t.type == "radial") return make_radial(params, name, spec.dim);
    fail(Status::internal, "no builder for transform type " + t.type);
}

} // namespace flow
