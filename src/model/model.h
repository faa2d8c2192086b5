// Model = transforms (preprocessing first) + base distribution + parameters,
// with the passes the C API exposes. Host pointers in, host pointers out:
// data cross to the device once per call (per chunk of rows).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flows/transform.h"
#include "model/base_distribution.h"
#include "model/param_arena.h"
#include "model/spec.h"
#include "optim/optimizer.h"

namespace flow {

class Model {
public:
    // Throws Error(Status::spec) for a bad spec.
    static std::unique_ptr<Model> create(Backend &backend, const std::string &spec_json,
                                         uint64_t seed);
    // Throws Error(Status::format) for anything malformed in the bytes.
    static std::unique_ptr<Model> load(Backend &backend, const uint8_t *bytes, size_t len);
    std::vector<uint8_t> save() const;
    std::unique_ptr<Model> clone(Backend &backend) const;

    size_t dim() const { return spec_.dim; }
    size_t context_dim() const { return spec_.context_dim; }
    size_t param_count() const { return params_.count(); }
    const std::string &spec_json() const { return spec_json_; }
    DeviceKind device() const { return backend_.kind(); }
    uint64_t step_count() const { return steps_; }

    void get_params(float *out) const;
    void set_params(const float *values);

    void log_prob(const float *x, const float *context, size_t n, float *out);
    void sample(size_t n, const float *context, float temperature, uint64_t seed, float *out_x,
                float *out_log_prob);
    void forward(const float *x, const float *context, size_t n, float *out_z,
                 float *out_logdet);
    void inverse(const float *z, const float *context, size_t n, float *out_x,
                 float *out_logdet);

    void set_optimizer(const std::string &json);
    // Returns the mean NLL. Throws Status::numeric, changing nothing, when
    // the loss or a gradient is not finite.
    double train_step(const float *x, const float *context, size_t n);
    double loss_grad(const float *x, const float *context, size_t n, float *param_grad,
                     float *x_grad);

private:
    // What a pass over a block of rows runs in: the transforms and the base
    // distribution (each with its workspaces) and the pass's own tensors.
    // The model's own lane serves one-thread work; on several CPU threads
    // each thread evaluates whole row blocks, or trains on its part of a
    // batch, in a lane of its own: a replica built from the same spec (so
    // with the same parameter ids) that reads the model's parameters.
    struct Lane {
        std::vector<std::unique_ptr<Transform>> transforms;
        std::unique_ptr<BaseDistribution> base;
        Tensor input, context;
        std::vector<Tensor> acts; // outputs of the transforms
        Tensor logdet, log_prob;
        // Training: d loss / d log-density per row, the backward pass's
        // ping-pong buffers (data_grad: the one holding d loss / dx), and in
        // a replica the model's parameter values with gradients of its own.
        // log_prob_sum: the sum of the rows' log-densities.
        Tensor dlog, grad_a, grad_b;
        const Tensor *data_grad = nullptr;
        double log_prob_sum = 0.0;
        ParamArena params{false};
    };

    Model(Backend &backend, ModelSpec spec, uint64_t seed);

    void build_lane(Lane &lane, ParamArena &params, ParamArena &buffers) const;
    // The model's lane and lanes - 1 replicas, made on first use.
    void ensure_lanes(size_t lanes);
    // Lane t: 0 the model's own, then the replicas.
    Lane &lane_at(size_t t) { return t == 0 ? main_ : *lanes_[t - 1]; }
    // body(index, lane) on `lanes` threads, thread t in lane t (0: the
    // model's own); rethrows the first error once every thread has stopped.
    template <class Body> void on_lanes(size_t lanes, Body &&body);
    // block(lane, begin, rows) over the row blocks of an evaluation pass
    // over n rows (a forward pass when `forward`): in order on the model's
    // own lane, or spread over the threads' lanes; rethrows the first error
    // once every thread has stopped.
    template <class Block> void for_each_block(size_t n, bool forward, Block &&block);

    void check_inputs(const float *x, const float *context, size_t n, bool data) const;
    void upload_rows(Lane &lane, const float *x, const float *context, size_t begin, size_t rows);
    const Tensor &forward_pass(Lane &lane, const Pass &pass);
    const Tensor &inverse_pass(Lane &lane, const Tensor &z, const Tensor &context);
    // Agnostic MADE bases: every lane's masks those of evaluation.
    void use_evaluation_masks();
    // How a train step on n rows is split: over `lanes` lanes (1: the
    // model's alone), each taking its rows in parts of at most part_rows.
    struct TrainSplit {
        size_t lanes, part_rows;
    };
    TrainSplit training_split(size_t n);
    double loss_and_gradients(const float *x, const float *context, size_t n, uint64_t stream,
                              TrainSplit split);
    void lane_gradients(Lane &lane, ParamArena &params, const float *x, const float *context,
                        size_t begin, size_t rows, size_t n, uint64_t stream, size_t part_rows);
    void part_gradients(Lane &lane, ParamArena &params, const float *x, const float *context,
                        size_t begin, size_t rows, size_t n, uint64_t stream);

    Backend &backend_;
    ModelSpec spec_;
    std::string spec_json_;
    uint64_t seed_;     // initial weights; key of the dequantization noise
    uint64_t steps_ = 0; // successful train steps
    // CPU passes: rows per evaluation block, per training part (see model.cpp)
    size_t block_rows_ = 0, part_rows_ = 0;
    ParamArena params_{true}, buffers_{false};
    Lane main_;
    std::vector<std::unique_ptr<Lane>> lanes_; // the other threads' lanes
    std::unique_ptr<Optimizer> optimizer_;     // made on first use
};

} // namespace flow
