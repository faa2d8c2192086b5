#include "model/base_distribution.h"

#include "backend/philox.h"
#include "core/error.h"
#include "nn/made.h"

namespace flow {

namespace {

// The stream that sampling draws from: one per purpose, so a seed used for
// sampling never reproduces the dequantization noise.
constexpr uint64_t sample_stream = 0x73616d706c650000ull;

class StandardNormal final : public BaseDistribution {
public:
    void log_prob(const ParamArena &, const Tensor &z, const Tensor &, Tensor &out) const override {
        z.backend().normal_log_prob(z, out);
    }
    void log_prob_backward(const ParamArena &, const Tensor &z, const Tensor &, const Tensor &dlogp,
                           Tensor &dz) const override {
        z.backend().normal_log_prob_backward(z, dlogp, dz);
    }
    void sample(const ParamArena &, const Tensor &, Tensor &z, uint64_t seed, uint64_t offset,
                float temperature) const override {
        z.backend().fill_normal(z, seed, sample_stream + offset, temperature);
    }
};

class StandardLogistic final : public BaseDistribution {
public:
    void log_prob(const ParamArena &, const Tensor &z, const Tensor &, Tensor &out) const override {
        z.backend().logistic_log_prob(z, out);
    }
    void log_prob_backward(const ParamArena &, const Tensor &z, const Tensor &, const Tensor &dlogp,
                           Tensor &dz) const override {
        z.backend().logistic_log_prob_backward(z, dlogp, dz);
    }
    void sample(const ParamArena &, const Tensor &, Tensor &z, uint64_t seed, uint64_t offset,
                float temperature) const override {
        z.backend().fill_logistic(z, seed, sample_stream + offset, temperature);
    }
};

// Mixture of K diagonal Gaussians. Initialization: equal weights, unit
// scales, means uniform in [-1, 1]^D (from the model seed), so the
// components start apart.
class MixtureOfGaussians final : public BaseDistribution {
public:
    MixtureOfGaussians(ParamArena &params, size_t components, size_t dim)
        : logits_(params.declare("base.logits", {components}, Init::zeros)),
          means_(params.declare("base.means", {components, dim}, Init::uniform, 1.0f)),
          log_scales_(params.declare("base.log_scales", {components, dim}, Init::zeros)) {}

    void log_prob(const ParamArena &params, const Tensor &z, const Tensor &,
                  Tensor &out) const override {
        z.backend().mog_log_prob(z, params.value(logits_), params.value(means_),
                                 params.value(log_scales_), out);
    }
    void log_prob_backward(const ParamArena &params, const Tensor &z, const Tensor &,
                           const Tensor &dlogp, Tensor &dz) const override {
        Tensor dlogits = params.grad(logits_), dmeans = params.grad(means_),
               dlog_scales = params.grad(log_scales_);
        z.backend().mog_log_prob_backward(z, params.value(logits_), params.value(means_),
                                          params.value(log_scales_), dlogp, dz, dlogits, dmeans,
                                          dlog_scales);
    }
    void sample(const ParamArena &params, const Tensor &, Tensor &z, uint64_t seed,
                uint64_t offset, float temperature) const override {
        z.backend().mog_sample(z, params.value(logits_), params.value(means_),
                               params.value(log_scales_), seed, sample_stream + offset,
                               temperature);
    }

private:
    size_t logits_, means_, log_scales_;
};

// MADE MoG: per dimension a mixture of C Gaussians whose logits, means and
// log-scales (blocks c, C + c, 2C + c of a MADE with 3C outputs per
// dimension) depend on z_<d in the MADE's order (and on the context).
// Initialization: the MADE's output layer is zero except the bias of the
// means, uniform in [-1, 1] (from the model seed), so the components start
// apart with equal weights and unit scales.
//
// Agnostic training: training step k (>= 1) uses the masks of
// made_draw(config, order?, connectivity?, k); every other pass evaluates
// the ensemble of draws 0..K-1 (K = "ensemble"; draw 0 = the spec's masks):
// log pi(z) = log (1/K) sum_j pi_j(z), a mixture over the masks, sampled by
// drawing a member per row.
class MadeMixture final : public BaseDistribution {
public:
    MadeMixture(Backend &be, ParamArena &params, const ModelSpec &spec)
        : config_(config(spec)), order_(spec.base_made.order),
          agnostic_order_(spec.base_made.agnostic == "order" || spec.base_made.agnostic == "both"),
          agnostic_connectivity_(spec.base_made.agnostic == "connectivity" ||
                                 spec.base_made.agnostic == "both"),
          members_(agnostic_order_ || agnostic_connectivity_ ? spec.base_made.ensemble : 1),
          net_(be, params, "base.made", config_, means_init(spec)) {}

    void set_draw(uint64_t draw) const override { train_draw_ = draw; }

    void log_prob(const ParamArena &params, const Tensor &z, const Tensor &context,
                  Tensor &out) const override {
        Backend &be = z.backend();
        last_z_ = nullptr;
        if (members() == 1) {
            use_draw(train_draw_);
            be.made_mog_log_prob(z, net_.forward(params, z, context), out);
            last_z_ = z.f32();
            last_rows_ = z.rows();
            return;
        }
        const size_t n = z.rows();
        lp_.ensure(be, {members_, n});
        for (size_t j = 0; j < members_; ++j) {
            use_draw(j);
            Tensor row = lp_.row_block(j, 1);
            be.made_mog_log_prob(z, net_.forward(params, z, context), row);
        }
        be.log_mean_exp(lp_, out);
        ensemble_out_.ensure(be, {n});
        be.copy(out, ensemble_out_);
    }

    // The MADE pass of the log_prob() just before is reused (one pass for
    // the loss and its gradient); an ensemble runs each member again.
    void log_prob_backward(const ParamArena &params, const Tensor &z, const Tensor &context,
                           const Tensor &dlogp, Tensor &dz) const override {
        Backend &be = z.backend();
        if (members() == 1) {
            use_draw(train_draw_);
            if (last_z_ != z.f32() || last_rows_ != z.rows()) net_.forward(params, z, context);
            backward(params, z, dlogp, dz, nullptr);
            return;
        }
        const size_t n = z.rows();
        dlp_.ensure(be, {members_, n});
        be.log_mean_exp_backward(lp_, ensemble_out_, dlogp, dlp_);
        be.fill(dz, 0.0f);
        dz_member_.ensure(be, dz.shape());
        for (size_t j = 0; j < members_; ++j) {
            use_draw(j);
            const Tensor &h = net_.forward(params, z, context);
            dh_.ensure(be, h.shape());
            be.made_mog_log_prob_backward(z, h, dlp_.row_block(j, 1), dz_member_, dh_, nullptr);
            net_.backward(params, dh_, &dnet_, true);
            be.axpy(1.0f, dz_member_, dz);
            be.axpy(1.0f, dnet_, dz);
        }
    }

    // One member: the mixtures' densities and gradients in one pass.
    void log_prob_and_backward(const ParamArena &params, const Tensor &z, const Tensor &context,
                               const Tensor &dlogp, Tensor &out, Tensor &dz) const override {
        if (members() != 1) return BaseDistribution::log_prob_and_backward(params, z, context,
                                                                          dlogp, out, dz);
        use_draw(train_draw_);
        last_z_ = nullptr;
        net_.forward(params, z, context);
        backward(params, z, dlogp, dz, &out);
    }

    // D passes per member: pass k draws the dimension order[k] from its
    // mixture given the dimensions already drawn (the others stay 0 and are
    // not seen). With an ensemble, row i belongs to member floor(K u_i) and
    // only that member's passes write it.
    void sample(const ParamArena &params, const Tensor &context, Tensor &z, uint64_t seed,
                uint64_t offset, float temperature) const override {
        Backend &be = z.backend();
        be.fill(z, 0.0f);
        last_z_ = nullptr;
        const size_t K = members();
        if (K > 1) {
            member_.ensure(be, {z.rows()});
            be.fill_uniform(member_, seed, sample_stream + offset + member_stream, 0.0f, (float)K);
        }
        for (size_t j = 0; j < K; ++j) {
            use_draw(K > 1 ? j : train_draw_);
            // Pass k needs only dimension order[k]'s mixture (see forward_dimension).
            net_.mask_weights(params);
            for (size_t k = 0; k < order_.size(); ++k) {
                const Tensor &h = net_.forward_dimension(params, z, context, k);
                be.made_mog_sample(z, h, (size_t)order_[k], seed, sample_stream + offset,
                                   temperature, K > 1 ? &member_ : nullptr, K, j);
            }
        }
    }

private:
    // The per-row member draws of sampling live on their own streams.
    static constexpr uint64_t member_stream = 1ull << 40;

    size_t members() const { return train_draw_ ? 1 : members_; }

    // The backward pass of one member from its MADE's output (and out, when
    // non-null, its log-density).
    void backward(const ParamArena &params, const Tensor &z, const Tensor &dlogp, Tensor &dz,
                  Tensor *out) const {
        Backend &be = z.backend();
        dh_.ensure(be, net_.output().shape());
        be.made_mog_log_prob_backward(z, net_.output(), dlogp, dz, dh_, out);
        net_.backward(params, dh_, &dnet_, true);
        be.axpy(1.0f, dnet_, dz);
    }

    void use_draw(uint64_t draw) const {
        if ((!agnostic_order_ && !agnostic_connectivity_) || draw == draw_) return;
        const MadeConfig c = made_draw(config_, agnostic_order_, agnostic_connectivity_, draw);
        net_.set_masks(c);
        order_ = c.order;
        draw_ = draw;
        last_z_ = nullptr;
    }

    static MadeConfig config(const ModelSpec &spec) {
        const TransformSpec &t = spec.base_made;
        MadeConfig c;
        c.order = t.order;
        c.hidden = t.hidden;
        c.activation = t.activation;
        c.context_dim = spec.context_dim;
        c.mask_seed = t.mask_seed;
        c.blocks = 3 * spec.base_components;
        return c;
    }
    static InitFill means_init(const ModelSpec &spec) {
        const size_t C = spec.base_components, D = spec.dim;
        return [C, D](uint64_t seed, float *dst) {
            for (size_t k = 0; k < 3 * C * D; ++k) dst[k] = 0.0f;
            for (size_t k = 0; k < C * D; ++k)
                dst[C * D + k] =
                    2.0f * philox_uniform(philox4x32_10(seed, 0x6d6d6f6700000000ull, k).v[0]) - 1.0f;
        };
    }

    MadeConfig config_;
    mutable std::vector<int> order_;
    bool agnostic_order_, agnostic_connectivity_;
    size_t members_;
    mutable uint64_t draw_ = 0, train_draw_ = 0;
    mutable MadeNet net_;
    mutable Tensor dh_, dnet_, lp_, dlp_, ensemble_out_, dz_member_, member_;
    mutable const void *last_z_ = nullptr;
    mutable size_t last_rows_ = 0;
};

} // namespace

std::unique_ptr<BaseDistribution> make_base_distribution(Backend &backend, const ModelSpec &spec,
                                                         ParamArena &params) {
    if (spec.base == "made_mog") return std::make_unique<MadeMixture>(backend, params, spec);
    if (spec.base == "normal") return std::make_unique<StandardNormal>();
    if (spec.base == "logistic") return std::make_unique<StandardLogistic>();
    if (spec.base == "mog")
        return std::make_unique<MixtureOfGaussians>(params, spec.base_components, spec.dim);
    fail(Status::spec, "spec: base: unknown type \"" + spec.base + "\"");
}

} // namespace flow
