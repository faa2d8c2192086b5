// Tensor: a typed view of a device buffer with a shape. Storage is shared, so
// views (a parameter inside the arena, a row block of a batch) are cheap and
// never copy. Tensors do not compute: the Backend does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <vector>

namespace flow {

class Backend;

// A tensor's dimensions, held inline: views and workspaces take a new shape
// on every call, and a heap-allocated one cost an allocation each time.
class Shape {
public:
    static constexpr size_t kMaxDims = 6;
    Shape() = default;
    Shape(std::initializer_list<size_t> dims) : Shape(dims.begin(), dims.size()) {}
    Shape(const std::vector<size_t> &dims) : Shape(dims.data(), dims.size()) {}

    size_t size() const { return ndim_; }
    size_t operator[](size_t i) const { return dims_[i]; }
    size_t &operator[](size_t i) { return dims_[i]; }
    const size_t *begin() const { return dims_; }
    const size_t *end() const { return dims_ + ndim_; }

private:
    Shape(const size_t *dims, size_t ndim);
    size_t dims_[kMaxDims] = {};
    size_t ndim_ = 0;
};

enum class DType : uint8_t { f32, i32 };

// One device allocation, freed by the backend that made it.
class Storage {
public:
    Storage(Backend &backend, size_t bytes);
    ~Storage();
    Storage(const Storage &) = delete;
    Storage &operator=(const Storage &) = delete;

    void *data() const { return data_; }
    size_t bytes() const { return bytes_; }
    Backend &backend() const { return backend_; }

private:
    Backend &backend_;
    void *data_;
    size_t bytes_;
};

class Tensor {
public:
    Tensor() = default;
    // A new uninitialized tensor on backend.
    Tensor(Backend &backend, const Shape &shape, DType dtype = DType::f32);

    bool defined() const { return storage_ != nullptr; }
    Backend &backend() const { return storage_->backend(); }
    DType dtype() const { return dtype_; }
    const Shape &shape() const { return shape_; }
    size_t ndim() const { return shape_.size(); }
    size_t dim(size_t i) const { return shape_[i]; }
    size_t size() const; // number of elements

    // Matrix view used by the ops: rows = shape[0], cols = the rest. A 1-D
    // tensor of length k is one row of k columns.
    size_t rows() const { return shape_.size() <= 1 ? 1 : shape_[0]; }
    size_t cols() const;

    float *f32() const;
    int32_t *i32() const;

    // A view of `shape` starting `offset` elements into this tensor's data.
    Tensor view(size_t offset, const Shape &shape) const;
    // Rows [begin, begin + count) of a matrix.
    Tensor row_block(size_t begin, size_t count) const;

    // Makes this tensor a [shape] f32 tensor, reusing its storage when it is
    // big enough (workspaces call this every batch: no allocation in steady
    // state once the largest batch has been seen).
    void ensure(Backend &backend, const Shape &shape);

private:
    std::shared_ptr<Storage> storage_;
    size_t offset_ = 0; // in elements
    Shape shape_;
    DType dtype_ = DType::f32;
};

size_t shape_size(const Shape &shape);

// t as an optional operand: null when undefined.
inline const Tensor *if_defined(const Tensor &t) { return t.defined() ? &t : nullptr; }

} // namespace flow
