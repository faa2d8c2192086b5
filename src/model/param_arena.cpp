#include "model/param_arena.h"

#include "backend/backend.h"
#include "backend/philox.h"

#include <atomic>

namespace flow {

void ParamArena::touch() {
    static std::atomic<uint64_t> last{0};
    generation_ = ++last;
}

size_t ParamArena::declare(std::string name, std::vector<size_t> shape, Init init,
                           float bound) {
    size_t size = shape_size(shape);
    infos_.push_back({std::move(name), std::move(shape), total_, init, bound, nullptr});
    total_ += size;
    return infos_.size() - 1;
}

size_t ParamArena::declare_custom(std::string name, std::vector<size_t> shape, InitFill fill) {
    size_t id = declare(std::move(name), std::move(shape), Init::custom);
    infos_[id].fill = std::move(fill);
    return id;
}

void ParamArena::share_values(Backend &backend, const ParamArena &of) {
    values_ = of.values_;
    generation_ = of.generation_;
    if (!grads_.defined()) grads_ = Tensor(backend, {total_ ? total_ : 1}).view(0, {total_});
}

void ParamArena::allocate(Backend &backend, uint64_t seed) {
    // One element at least, so an empty arena is still a valid tensor.
    std::vector<float> host(total_ ? total_ : 1, 0.0f);
    for (size_t p = 0; p < infos_.size(); ++p) {
        const ParamInfo &info = infos_[p];
        float *dst = host.data() + info.offset;
        size_t size = shape_size(info.shape);
        if (info.init == Init::custom) {
            info.fill(seed, dst);
            continue;
        }
        for (size_t k = 0; k < size; ++k) {
            switch (info.init) {
            case Init::zeros: dst[k] = 0.0f; break;
            case Init::ones: dst[k] = 1.0f; break;
            case Init::custom: break;
            case Init::uniform: {
                float u = philox_uniform(philox4x32_10(seed, p, k).v[0]);
                dst[k] = info.bound * (2.0f * u - 1.0f);
                break;
            }
            }
        }
    }
    values_ = Tensor(backend, {host.size()});
    backend.upload(values_, host.data());
    values_ = values_.view(0, {total_});
    if (with_grads_) {
        grads_ = Tensor(backend, {host.size()});
        backend.fill(grads_, 0.0f);
        grads_ = grads_.view(0, {total_});
    }
    touch();
}

} // namespace flow
