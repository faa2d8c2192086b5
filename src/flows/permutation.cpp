// Fixed reorderings of the coordinates (reverse, random): volume preserving,
// so they add nothing to the log-determinant.
#include "flows/elementwise.h"

namespace flow {

namespace {

class Permutation final : public Transform {
public:
    Permutation(Backend &be, const std::vector<int> &perm)
        : forward_index_(be, {perm.size()}, DType::i32),
          inverse_index_(be, {perm.size()}, DType::i32) {
        std::vector<int32_t> inverse(perm.size());
        for (size_t j = 0; j < perm.size(); ++j) inverse[perm[j]] = (int32_t)j;
        std::vector<int32_t> forward(perm.begin(), perm.end());
        be.upload(forward_index_, forward.data());
        be.upload(inverse_index_, inverse.data());
    }

    void forward(const ParamArena &, const ParamArena &, const Tensor &x, const Tensor &,
                 Tensor &z, Tensor &, const Pass &) override {
        x.backend().gather_cols(x, forward_index_, z);
    }
    void inverse(const ParamArena &, const ParamArena &, const Tensor &z, const Tensor &,
                 Tensor &x, Tensor &) override {
        z.backend().gather_cols(z, inverse_index_, x);
    }
    void backward(const ParamArena &, const ParamArena &, const Tensor &dz, const Tensor &,
                  Tensor &dx) override {
        dz.backend().gather_cols(dz, inverse_index_, dx);
    }

private:
    Tensor forward_index_, inverse_index_;
};

} // namespace

std::unique_ptr<Transform> make_permutation(Backend &backend, const std::vector<int> &perm) {
    return std::make_unique<Permutation>(backend, perm);
}

} // namespace flow
