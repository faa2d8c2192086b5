// All parameters of a model in one contiguous allocation (and their gradients
// in a second one of the same layout), so that optimizer steps, device copies
// and saving are one loop. Blocks declare their parameters while the model is
// built; allocate() then lays them out and initializes them.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "backend/tensor.h"

namespace flow {

enum class Init { zeros, ones, uniform, custom };

// Init::custom: fills the tensor's elements (host, row-major) from the seed
// allocate() is given, for initializations that are not element-wise (e.g.
// a random rotation).
using InitFill = std::function<void(uint64_t seed, float *dst)>;

struct ParamInfo {
    std::string name;
    std::vector<size_t> shape;
    size_t offset; // in elements, inside the arena
    Init init;
    float bound; // uniform(-bound, bound)
    InitFill fill; // Init::custom
};

class ParamArena {
public:
    explicit ParamArena(bool with_grads) : with_grads_(with_grads) {}

    // Returns the id used to fetch the tensor after allocate().
    size_t declare(std::string name, std::vector<size_t> shape, Init init,
                   float bound = 0.0f);
    // A tensor initialized by fill(seed, host data) at allocate().
    size_t declare_custom(std::string name, std::vector<size_t> shape, InitFill fill);
    // Lays out and initializes every declared tensor; uniform draws come from
    // Philox(seed, stream = parameter index) so they do not depend on the
    // backend.
    void allocate(Backend &backend, uint64_t seed);

    size_t count() const { return total_; }
    // Changes whenever the values may change (allocate(), touch(), and every
    // mutable access through values()) and is shared with no other arena
    // but a view of the same values (share_values), so what a block derives
    // from the parameters (masked or composed weights) is still valid while
    // the generation it was derived at is.
    uint64_t generation() const { return generation_; }
    // For writes through value(id) views, which values() does not see.
    void touch();
    // Makes this arena (of the same layout) a view of of's values, with their
    // generation, and gradients of its own (allocated on first use): where a
    // thread adds the gradients of its part of a batch.
    void share_values(Backend &backend, const ParamArena &of);
    const std::vector<ParamInfo> &infos() const { return infos_; }
    Tensor value(size_t id) const { return values_.view(infos_[id].offset, infos_[id].shape); }
    Tensor grad(size_t id) const { return grads_.view(infos_[id].offset, infos_[id].shape); }
    Tensor &values() {
        touch();
        return values_;
    }
    Tensor &grads() { return grads_; }
    const Tensor &values() const { return values_; }

private:
    bool with_grads_;
    std::vector<ParamInfo> infos_;
    size_t total_ = 0;
    uint64_t generation_ = 0; // 0: never allocated
    Tensor values_, grads_;
};

// The generations of the arenas (the parameters, and the buffers when they
// count too) that something derived from them was made at: it is current
// while both keep them. Default: never made (arenas start at generation 1).
class Derived {
public:
    bool current(const ParamArena &params, const ParamArena *buffers = nullptr) const {
        return params_ != 0 && params_ == params.generation() &&
               buffers_ == (buffers ? buffers->generation() : 0);
    }
    void made(const ParamArena &params, const ParamArena *buffers = nullptr) {
        params_ = params.generation();
        buffers_ = buffers ? buffers->generation() : 0;
    }

private:
    uint64_t params_ = 0, buffers_ = 0;
};

} // namespace flow
