#include "model/model.h"

#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <exception>

#include "backend/cpu/cpu_kernels.h"
#include "backend/cpu/cpu_small_gemm.h"
#include "core/error.h"
#include "core/subnormals.h"
#include "flows/factory.h"

namespace flow {

namespace {

// Rows per chunk for the passes that do not train, so workspaces stay bounded
// whatever n the caller passes.
constexpr size_t chunk_rows = 4096;
// On the CPU, evaluation passes go through the transforms in blocks of rows
// whose [rows, widest layer] intermediates take about 3/16 of a core's L2
// cache (cpu_block_share), between 64 and 512 rows, so that a block's few
// such matrices per conditioner and a layer's weight stay in L2 instead of
// streaming through memory: ~1.2x faster log_prob and sampling for 4096-row
// batches than whole chunks, and at hidden width 256 another 2-6% with
// 192-row blocks (1 MB L2, Zen 4) instead of 512; with 512 KB (Zen 3) the
// 96 rows of the same share made the couplings' best times 0-19% shorter
// than 192. Models with MADE layers keep blocks of cpu_made_block_floats
// whatever the L2: their staircase products and D-pass solves pay per
// block and panel, and on Zen 3 MAF sampled 5-24% slower in 96-row blocks
// than in 192 (in two runs of three). With several threads, each thread
// takes whole blocks through the whole flow: one parallel region per call
// instead of one per op, and no thread waits at every op for the other.
// Results do not change: these passes treat rows independently, and random
// numbers are still drawn per chunk_rows chunk.
constexpr double cpu_block_share = 3.0 / 16;
// Where the GEMM runs 16-float tiles, models no wider than
// cpu_max_part_width take 1/8 instead, as the train steps' parts are
// smaller there (Emerald Rapids, 2 MB L2, D = 8 couplings' log_prob in
// paired rounds: width 256, blocks of 128-256 rows 2-3% faster than 384;
// width 512, 128 rows as fast as 192). At width 1024 64-row blocks were
// 7% slower than 96.
constexpr double cpu_wide_tile_block_share = 1.0 / 8;
constexpr size_t cpu_default_l2_bytes = size_t(1) << 20;
constexpr size_t cpu_made_block_floats = 192 * 256;
constexpr size_t cpu_min_block_rows = 64, cpu_max_block_rows = 512;
// A CPU train step takes each lane's rows through forward and backward in
// parts, adding up the parts' gradients: a part's kept activations then
// stay in the caches from the forward to the backward pass instead of
// streaming through memory. Measured on 4096-row batches (Zen 4, 1 MB L2):
// at hidden width 64, 256-row parts train 20-25% faster than whole batches
// (512-row ones only 10% at D = 64); at width 256, 512-row parts 2-8%
// faster (256-row ones 2-7% slower than that). Layers wider than
// cpu_max_part_width keep whole parts: each part reads and repacks every
// weight again, which costs more once a weight outgrows L2 (hidden 1024:
// 10% slower steps in 256-row parts). Where the GEMM runs 16-float tiles
// (Intel's AVX-512 cores), twice the flops a cycle, a part's loads from
// beyond L2 weigh twice as much against its arithmetic: there 256-row
// parts up to width 512. Emerald Rapids (2 MB L2), 4096-row batches, width
// 256, 256- against 512-row parts in paired rounds: RealNVP, NICE and Glow
// D = 8 and RealNVP D = 64 train steps 5-10% faster at the median (best
// times 1-6%), MAF and MADE MoG 2-4%; 128-row parts no faster; at width
// 512, 256 and 512 rows alike and 128 rows 7% slower.
constexpr size_t cpu_part_rows = 256, cpu_wide_part_rows = 512, cpu_wide_part_width = 256;
constexpr size_t cpu_max_part_width = 512;
// Part rows of a batch taken through whole.
constexpr size_t whole_parts = ~size_t(0);
// Training on several CPU threads gives each thread a part of the batch to
// take through forward and backward (gradients added up at the end), when
// each part has at least this many rows: a train step's ops on a small
// batch are too short to split one by one (at batch 256 two threads made
// them slower than one). Each part's gradient is its rows' share of the
// mean, so the numbers are one thread's up to the order of float sums.
constexpr size_t cpu_lane_rows = 32;
// ... and at least one row per this many parameters: each extra lane zeroes
// and adds a copy of the gradients, which for a big model and a small batch
// costs what the split saves (a 784-D RealNVP of 7.2M parameters at batch
// 128, half the Fashion-MNIST demo's model, at two threads: 63.7-63.9 ms a
// step op by op, 62-67 ms split).
constexpr size_t cpu_params_per_lane_row = 16384;

// The width of the model's widest layer (data, context or hidden units),
// that of its widest [rows, width] intermediates.
size_t widest_layer(const ModelSpec &spec) {
    size_t widest = std::max<size_t>({spec.dim, spec.context_dim, 1});
    for (size_t h : spec.base_made.hidden) widest = std::max(widest, h);
    for (const TransformSpec &t : spec.transforms)
        for (size_t h : t.hidden) widest = std::max(widest, h);
    return widest;
}

bool has_made_layers(const ModelSpec &spec) {
    if (spec.base == "made_mog") return true;
    for (const TransformSpec &t : spec.transforms)
        if (t.type == "made_affine") return true;
    return false;
}

// Rows per evaluation block on the CPU for a model whose widest layer is
// `widest` units; the C library reads the L2 size from the CPU (0 where it
// cannot tell).
size_t cpu_block_rows(const ModelSpec &spec, size_t widest) {
    size_t floats = cpu_made_block_floats;
    if (!has_made_layers(spec)) {
        const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
        const size_t bytes = l2 > 0 ? size_t(l2) : cpu_default_l2_bytes;
        const double share = cpu_kernels::runs_16_float_tiles() && widest <= cpu_max_part_width
                                 ? cpu_wide_tile_block_share
                                 : cpu_block_share;
        floats = size_t(share * double(bytes)) / sizeof(float);
    }
    return std::clamp(floats / widest, cpu_min_block_rows, cpu_max_block_rows);
}

// Dequantization draws its noise per pass (counter = element of the pass), so
// forward passes of such models keep whole chunks.
bool draws_noise(const ModelSpec &spec) {
    for (const TransformSpec &t : spec.transforms)
        if (t.type == "dequantize") return true;
    return false;
}

// Dequantization noise streams: training step k uses stream k (k >= 1); the
// fixed noise of evaluation passes lives far above.
constexpr uint64_t eval_noise_stream = 1ull << 62;

void check_finite(const float *v, size_t rows, size_t cols, const char *what) {
    // The vectorized scan of the CPU kernels (host memory, as here) first;
    // the element loop only to name the culprit.
    if (cpu_kernels::all_finite_range(v, rows * cols)) return;
    for (size_t k = 0; k < rows * cols; ++k)
        if (!std::isfinite(v[k]))
            fail(Status::invalid_argument, std::string(what) + " holds a non-finite value (row " +
                                               std::to_string(k / cols) + ", column " +
                                               std::to_string(k % cols) + ")");
}

// Whether two arenas declare the same tensors in the same order.
bool same_layout(const ParamArena &a, const ParamArena &b) {
    const auto &x = a.infos(), &y = b.infos();
    if (x.size() != y.size()) return false;
    for (size_t k = 0; k < x.size(); ++k)
        if (x[k].name != y[k].name || x[k].shape != y[k].shape) return false;
    return true;
}

// The undefined tensor passed as the context of models without one.
const Tensor &no_tensor() {
    static const Tensor none;
    return none;
}

} // namespace

Model::Model(Backend &be, ModelSpec spec, uint64_t seed)
    : backend_(be), spec_(std::move(spec)), spec_json_(model_spec_json(spec_)), seed_(seed) {
    const size_t widest = widest_layer(spec_);
    block_rows_ = cpu_block_rows(spec_, widest);
    const bool wide_parts = widest >= cpu_wide_part_width && !cpu_kernels::runs_16_float_tiles();
    part_rows_ = widest > cpu_max_part_width ? whole_parts
                 : wide_parts               ? cpu_wide_part_rows
                                            : cpu_part_rows;
    build_lane(main_, params_, buffers_);
}

void Model::build_lane(Lane &lane, ParamArena &params, ParamArena &buffers) const {
    for (size_t k = 0; k < spec_.transforms.size(); ++k)
        lane.transforms.push_back(make_transform(backend_, params, buffers, spec_, k));
    lane.base = make_base_distribution(backend_, spec_, params);
    lane.acts.resize(3); // evaluation passes ping-pong in acts[1..2]
}

std::unique_ptr<Model> Model::create(Backend &be, const std::string &spec_json, uint64_t seed) {
    std::unique_ptr<Model> m(new Model(be, parse_model_spec(spec_json, seed), seed));
    m->params_.allocate(be, seed);
    m->buffers_.allocate(be, seed);
    be.synchronize();
    return m;
}

void Model::get_params(float *out) const { backend_.download(params_.values(), out); }

void Model::set_params(const float *values) {
    check_finite(values, 1, params_.count(), "parameters");
    backend_.upload(params_.values(), values);
    backend_.synchronize();
}

void Model::check_inputs(const float *x, const float *context, size_t n, bool data) const {
    if (n == 0) fail(Status::invalid_argument, "n must be at least 1");
    if (spec_.context_dim == 0 && context)
        fail(Status::invalid_argument, "this model has no context (context_dim is 0): pass NULL");
    if (spec_.context_dim > 0 && !context)
        fail(Status::invalid_argument, "this model needs a context of " +
                                           std::to_string(spec_.context_dim) + " values per row");
    if (context) check_finite(context, n, spec_.context_dim, "context");
    if (!x) return;
    check_finite(x, n, spec_.dim, data ? "data" : "latent");
    if (data && !main_.transforms.empty()) main_.transforms.front()->check_data(x, n * spec_.dim);
}

void Model::upload_rows(Lane &lane, const float *x, const float *context, size_t begin,
                        size_t rows) {
    if (x) {
        lane.input.ensure(backend_, {rows, spec_.dim});
        backend_.upload(lane.input, x + begin * spec_.dim);
    }
    if (context) {
        lane.context.ensure(backend_, {rows, spec_.context_dim});
        backend_.upload(lane.context, context + begin * spec_.context_dim);
    }
}

// The evaluation buffer a transform that cannot work in place writes its
// output to: whichever of lane.acts[1..2] does not hold its input.
static Tensor &other_buffer(std::vector<Tensor> &acts, const Tensor *in) {
    return in == &acts[1] ? acts[2] : acts[1];
}

// lane.input -> z through every transform; lane.logdet gets the total log-det.
// Evaluation overwrites lane.input (transforms that can work in place do).
const Tensor &Model::forward_pass(Lane &lane, const Pass &pass) {
    size_t n = lane.input.rows();
    const Tensor &context = spec_.context_dim ? lane.context : no_tensor();
    lane.logdet.ensure(backend_, {n});
    backend_.fill(lane.logdet, 0.0f);
    Tensor *in = &lane.input;
    for (size_t k = 0; k < lane.transforms.size(); ++k) {
        Transform &t = *lane.transforms[k];
        // Training keeps every intermediate for backward; evaluation ping-pongs.
        Tensor &out = pass.train        ? lane.acts[k + 1]
                      : t.in_place() ? *in
                                        : other_buffer(lane.acts, in);
        out.ensure(backend_, {n, spec_.dim});
        t.forward(params_, buffers_, *in, context, out, lane.logdet, pass);
        in = &out;
    }
    return *in;
}

// z -> x through every transform backwards (context: z's rows of it, or
// undefined); lane.logdet gets log|det dx/dz|. z stays as it is.
const Tensor &Model::inverse_pass(Lane &lane, const Tensor &z, const Tensor &context) {
    size_t n = z.rows();
    lane.logdet.ensure(backend_, {n});
    backend_.fill(lane.logdet, 0.0f);
    const Tensor *in = &z;
    Tensor *own = nullptr; // in, once it is one of the lane's buffers
    for (size_t k = lane.transforms.size(); k-- > 0;) {
        Transform &t = *lane.transforms[k];
        Tensor &out = own && t.in_place() ? *own : other_buffer(lane.acts, in);
        out.ensure(backend_, {n, spec_.dim});
        t.inverse(params_, buffers_, *in, context, out, lane.logdet);
        in = own = &out;
    }
    return *in;
}

void Model::ensure_lanes(size_t lanes) {
    while (lanes_.size() + 1 < lanes) {
        // Declaring into arenas of its own, in the model's order, gives the
        // replica the model's parameter ids; checked, as every pass relies on it.
        ParamArena buffers(false);
        auto lane = std::make_unique<Lane>();
        build_lane(*lane, lane->params, buffers);
        if (!same_layout(lane->params, params_) || !same_layout(buffers, buffers_))
            fail(Status::internal, "a replica of the model declared different parameters");
        lanes_.push_back(std::move(lane));
    }
}

template <class Body> void Model::on_lanes(size_t lanes, Body &&body) {
    std::exception_ptr error;
#pragma omp parallel num_threads(int(lanes))
    {
        const FlushSubnormals flush;
        const size_t t = size_t(omp_get_thread_num());
        try {
            body(t, lane_at(t));
        } catch (...) {
#pragma omp critical(flow_model_lane_error)
            if (!error) error = std::current_exception();
        }
    }
    if (error) std::rethrow_exception(error);
}

template <class Block> void Model::for_each_block(size_t n, bool forward, Block &&block) {
    // Cache-sized blocks on the CPU, at least one per thread, where that
    // changes no result; whole chunks on the model's own lane otherwise.
    const bool split = backend_.kind() == DeviceKind::cpu && !(forward && draws_noise(spec_));
    const size_t threads =
        split && !omp_in_parallel() ? size_t(std::max(omp_get_max_threads(), 1)) : 1;
    const size_t step =
        split ? std::min(block_rows_, std::max<size_t>((n + threads - 1) / threads, 1))
              : chunk_rows;
    const size_t blocks = (n + step - 1) / step;
    const size_t lanes = std::min(threads, blocks);
    if (lanes == 1) {
        for (size_t begin = 0; begin < n; begin += step)
            block(main_, begin, std::min(step, n - begin));
        return;
    }
    ensure_lanes(lanes);
    // Threads take the next block as they finish one; which lane runs a
    // block changes nothing in its result.
    std::atomic<size_t> next{0};
    on_lanes(lanes, [&](size_t, Lane &lane) {
        for (size_t b = next++; b < blocks; b = next++) {
            try {
                block(lane, b * step, std::min(step, n - b * step));
            } catch (...) {
                next = blocks; // the other threads stop before their next block
                throw;
            }
        }
    });
}

void Model::use_evaluation_masks() {
    main_.base->set_draw(0);
    for (auto &lane : lanes_) lane->base->set_draw(0);
}

void Model::log_prob(const float *x, const float *context, size_t n, float *out) {
    check_inputs(x, context, n, true);
    use_evaluation_masks();
    for_each_block(n, true, [&](Lane &lane, size_t begin, size_t rows) {
        upload_rows(lane, x, context, begin, rows);
        const Tensor &z = forward_pass(lane, {false, seed_, eval_noise_stream + begin});
        lane.log_prob.ensure(backend_, {rows});
        lane.base->log_prob(params_, z, (spec_.context_dim ? lane.context : no_tensor()),
                            lane.log_prob);
        backend_.axpy(1.0f, lane.logdet, lane.log_prob);
        backend_.download(lane.log_prob, out + begin);
    });
}

void Model::forward(const float *x, const float *context, size_t n, float *out_z,
                    float *out_logdet) {
    check_inputs(x, context, n, true);
    for_each_block(n, true, [&](Lane &lane, size_t begin, size_t rows) {
        upload_rows(lane, x, context, begin, rows);
        backend_.download(forward_pass(lane, {false, seed_, eval_noise_stream + begin}),
                          out_z + begin * spec_.dim);
        if (out_logdet) backend_.download(lane.logdet, out_logdet + begin);
    });
}

void Model::inverse(const float *z, const float *context, size_t n, float *out_x,
                    float *out_logdet) {
    check_inputs(z, context, n, false);
    for_each_block(n, false, [&](Lane &lane, size_t begin, size_t rows) {
        upload_rows(lane, z, context, begin, rows);
        const Tensor &x = inverse_pass(lane, lane.input, spec_.context_dim ? lane.context : no_tensor());
        backend_.download(x, out_x + begin * spec_.dim);
        if (out_logdet) backend_.download(lane.logdet, out_logdet + begin);
    });
}

void Model::sample(size_t n, const float *context, float temperature, uint64_t seed,
                   float *out_x, float *out_log_prob) {
    check_inputs(nullptr, context, n, false);
    if (!(temperature > 0.0f) || !std::isfinite(temperature))
        fail(Status::invalid_argument, "temperature must be a finite number > 0");
    use_evaluation_masks();
    for (size_t begin = 0; begin < n; begin += chunk_rows) {
        const size_t rows = std::min(chunk_rows, n - begin);
        // The chunk's noise is drawn into the model's lane; the lanes then
        // take it through the transforms block by block, reading it (and the
        // chunk's context) in place.
        upload_rows(main_, nullptr, context, begin, rows);
        const Tensor &chunk_context = spec_.context_dim ? main_.context : no_tensor();
        main_.input.ensure(backend_, {rows, spec_.dim});
        main_.base->sample(params_, chunk_context, main_.input, seed, begin, temperature);
        const Tensor &noise = main_.input;
        for_each_block(rows, false, [&](Lane &lane, size_t b, size_t r) {
            const Tensor z = r == rows ? noise : noise.row_block(b, r);
            const Tensor block_context = !spec_.context_dim ? Tensor()
                                         : r == rows        ? chunk_context
                                                            : chunk_context.row_block(b, r);
            const Tensor &x = inverse_pass(lane, z, block_context);
            backend_.download(x, out_x + (begin + b) * spec_.dim);
            if (out_log_prob) {
                // log p(x) = log pi(z) - log|det dx/dz|
                lane.log_prob.ensure(backend_, {r});
                lane.base->log_prob(params_, z, block_context, lane.log_prob);
                backend_.axpy(-1.0f, lane.logdet, lane.log_prob);
                backend_.download(lane.log_prob, out_log_prob + begin + b);
            }
        });
    }
}

// The mean NLL of the batch in training mode, with every parameter gradient
// in params_.grads() and, on one lane in one part, the data gradient in
// *main_.data_grad. Nothing else changes.
double Model::loss_and_gradients(const float *x, const float *context, size_t n,
                                 uint64_t stream, TrainSplit split) {
    check_inputs(x, context, n, true);
    if (split.lanes == 1) {
        lane_gradients(main_, params_, x, context, 0, n, n, stream, split.part_rows);
    } else {
        ensure_lanes(split.lanes);
        for (size_t t = 1; t < split.lanes; ++t)
            lane_at(t).params.share_values(backend_, params_);
        on_lanes(split.lanes, [&](size_t t, Lane &l) {
            const size_t begin = n * t / split.lanes, end = n * (t + 1) / split.lanes;
            lane_gradients(l, t == 0 ? params_ : l.params, x, context, begin, end - begin, n,
                           stream, split.part_rows);
        });
        for (size_t t = 1; t < split.lanes; ++t)
            backend_.axpy(1.0f, lane_at(t).params.grads(), params_.grads());
    }
    if (!backend_.all_finite(params_.grads()))
        fail(Status::numeric, "a parameter gradient is not finite");
    // Added in lane order: the same numbers every time for this split.
    double sum = 0.0;
    for (size_t t = 0; t < split.lanes; ++t) sum += lane_at(t).log_prob_sum;
    return -sum / (double)n;
}

// Rows [begin, begin + rows) of an n-row batch through the lane in training
// mode and back, in parts of at most part_rows rows: params' gradients
// (zeroed first) get those of the rows' share of the mean NLL and
// lane.log_prob_sum the sum of their log-densities.
void Model::lane_gradients(Lane &lane, ParamArena &params, const float *x,
                           const float *context, size_t begin, size_t rows, size_t n,
                           uint64_t stream, size_t part_rows) {
    backend_.fill(params.grads(), 0.0f);
    lane.log_prob_sum = 0.0;
    // Agnostic MADE bases: training step k uses the masks of draw k;
    // flow_loss_grad (the evaluation stream) the evaluation masks (draw 0,
    // or the ensemble of draws 0..K-1).
    lane.base->set_draw(stream < eval_noise_stream ? stream : 0);
    lane.acts.resize(std::max<size_t>(lane.transforms.size() + 1, 3)); // every output kept
    const size_t parts = rows / part_rows + (rows % part_rows != 0);
    for (size_t t = 0; t < parts; ++t) { // parts of equal size, within a row
        const size_t first = begin + rows * t / parts, last = begin + rows * (t + 1) / parts;
        part_gradients(lane, params, x, context, first, last - first, n, stream);
    }
}

// One part of lane_gradients: its gradients added to params', its
// log-densities' sum to lane.log_prob_sum, and d loss / dx of its rows in
// lane.data_grad.
void Model::part_gradients(Lane &lane, ParamArena &params, const float *x,
                           const float *context, size_t begin, size_t rows, size_t n,
                           uint64_t stream) {
    upload_rows(lane, x, context, begin, rows);
    const Tensor &lane_context = spec_.context_dim ? lane.context : no_tensor();
    const Tensor &z = forward_pass(lane, {true, seed_, stream, begin * spec_.dim});

    // loss = -mean(log pi(z) + sum of logdets): every log term gets -1/n.
    lane.dlog.ensure(backend_, {rows});
    backend_.fill(lane.dlog, -1.0f / (float)n);
    lane.log_prob.ensure(backend_, {rows});
    lane.grad_a.ensure(backend_, {rows, spec_.dim});
    lane.base->log_prob_and_backward(params, z, lane_context, lane.dlog, lane.log_prob,
                                     lane.grad_a);
    backend_.axpy(1.0f, lane.logdet, lane.log_prob);
    const double sum = backend_.sum(lane.log_prob);
    if (!std::isfinite(sum))
        fail(Status::numeric, "the loss is not finite (" + std::to_string(-sum / (double)n) + ")");
    lane.log_prob_sum += sum;

    Tensor *dz = &lane.grad_a, *dx = &lane.grad_b;
    for (size_t k = lane.transforms.size(); k-- > 0;) {
        dx->ensure(backend_, {rows, spec_.dim});
        lane.transforms[k]->backward(params, buffers_, *dz, lane.dlog, *dx);
        std::swap(dz, dx);
    }
    lane.data_grad = dz;
}

Model::TrainSplit Model::training_split(size_t n) {
    const TrainSplit whole = {1, whole_parts};
    if (backend_.kind() != DeviceKind::cpu) return whole;
    for (auto &t : main_.transforms)
        if (!t->trains_rows_apart(buffers_)) return whole;
    const size_t rows = std::max(cpu_lane_rows, param_count() / cpu_params_per_lane_row);
    const size_t threads = omp_in_parallel() ? 1 : size_t(std::max(omp_get_max_threads(), 1));
    return {std::max<size_t>(std::min(threads, n / rows), 1), part_rows_};
}

double Model::train_step(const float *x, const float *context, size_t n) {
    double loss = loss_and_gradients(x, context, n, steps_ + 1, training_split(n));
    // Made only now: a first step that fails leaves the model as it was.
    if (!optimizer_) optimizer_ = std::make_unique<Optimizer>(backend_, param_count(), OptimizerConfig());
    optimizer_->step(params_);
    for (auto &t : main_.transforms) {
        t->commit_train_step(buffers_);
        t->commit_train_step_params(params_);
    }
    params_.touch(); // the commits write through value(id) views
    ++steps_;
    backend_.synchronize();
    return loss;
}

double Model::loss_grad(const float *x, const float *context, size_t n, float *param_grad,
                        float *x_grad) {
    double loss = loss_and_gradients(x, context, n, eval_noise_stream, {1, whole_parts});
    if (param_grad) backend_.download(params_.grads(), param_grad);
    if (x_grad) backend_.download(*main_.data_grad, x_grad);
    return loss;
}

void Model::set_optimizer(const std::string &json) {
    optimizer_ = std::make_unique<Optimizer>(backend_, param_count(), parse_optimizer_config(json));
    backend_.synchronize();
}

} // namespace flow
