#include "backend/tensor.h"

#include "backend/backend.h"
#include "core/error.h"

namespace flow {

Storage::Storage(Backend &backend, size_t bytes)
    : backend_(backend), data_(backend.allocate(bytes)), bytes_(bytes) {}

Storage::~Storage() { backend_.release(data_); }

Shape::Shape(const size_t *dims, size_t ndim) : ndim_(ndim) {
    if (ndim > kMaxDims)
        fail(Status::internal, "tensor of " + std::to_string(ndim) + " dimensions (at most " +
                                   std::to_string(kMaxDims) + ")");
    for (size_t i = 0; i < ndim; ++i) dims_[i] = dims[i];
}

size_t shape_size(const Shape &shape) {
    size_t n = 1;
    for (size_t d : shape) n *= d;
    return n;
}

static size_t dtype_bytes(DType) { return 4; }

Tensor::Tensor(Backend &backend, const Shape &shape, DType dtype)
    : storage_(std::make_shared<Storage>(backend, shape_size(shape) * dtype_bytes(dtype))),
      shape_(shape), dtype_(dtype) {}

size_t Tensor::size() const { return shape_size(shape_); }

size_t Tensor::cols() const {
    if (shape_.size() <= 1) return size();
    // The product of the trailing dims, so an empty batch [0, D] still has D.
    size_t cols = 1;
    for (size_t i = 1; i < shape_.size(); ++i) cols *= shape_[i];
    return cols;
}

float *Tensor::f32() const {
    if (dtype_ != DType::f32) fail(Status::internal, "tensor is not float32");
    return static_cast<float *>(storage_->data()) + offset_;
}

int32_t *Tensor::i32() const {
    if (dtype_ != DType::i32) fail(Status::internal, "tensor is not int32");
    return static_cast<int32_t *>(storage_->data()) + offset_;
}

Tensor Tensor::view(size_t offset, const Shape &shape) const {
    if (offset + shape_size(shape) > size())
        fail(Status::internal, "tensor view out of range");
    Tensor t = *this;
    t.offset_ = offset_ + offset;
    t.shape_ = shape;
    return t;
}

Tensor Tensor::row_block(size_t begin, size_t count) const {
    Shape shape = shape_;
    shape[0] = count;
    return view(begin * cols(), shape);
}

void Tensor::ensure(Backend &backend, const Shape &shape) {
    size_t need = shape_size(shape) * sizeof(float);
    if (!storage_ || &storage_->backend() != &backend || dtype_ != DType::f32 ||
        storage_->bytes() < need + offset_ * sizeof(float)) {
        // Allocate at least one element so data() is never null.
        storage_ = std::make_shared<Storage>(backend, need ? need : sizeof(float));
        offset_ = 0;
    }
    shape_ = shape;
    dtype_ = DType::f32;
}

} // namespace flow
