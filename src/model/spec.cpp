#include "model/spec.h"

#include <cmath>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "backend/philox.h"
#include "core/error.h"

namespace flow {

using nlohmann::json;

namespace {

// Sizes past these are refused as impossible specs rather than attempted
// (a hostile file must not make us allocate terabytes).
constexpr size_t max_dim = size_t(1) << 20;
constexpr size_t max_width = size_t(1) << 16;
constexpr size_t max_depth = 64;
constexpr size_t max_transforms = 10000;
constexpr size_t max_dim_times_transforms = size_t(1) << 26;

[[noreturn]] void spec_error(const std::string &where, const std::string &what) {
    fail(Status::spec, "spec: " + where + ": " + what);
}

// Reads the fields of one JSON object, remembering which were used so that
// finish() can refuse the ones nobody asked for.
class Fields {
public:
    Fields(const json &object, std::string where) : object_(object), where_(std::move(where)) {
        if (!object_.is_object()) spec_error(where_, "expected a JSON object");
    }

    bool has(const char *name) const { return object_.contains(name); }

    size_t size(const char *name, size_t fallback, size_t lo, size_t hi) {
        const json *v = find(name);
        if (!v) return fallback;
        if (!v->is_number_integer() || v->get<int64_t>() < (int64_t)lo ||
            v->get<uint64_t>() > hi)
            error(name, "must be an integer in " + std::to_string(lo) + ".." + std::to_string(hi));
        return v->get<size_t>();
    }

    double number(const char *name, double fallback, double lo, double hi, bool open_lo = false) {
        const json *v = find(name);
        if (!v) return fallback;
        if (!v->is_number()) error(name, "must be a number");
        double x = v->get<double>();
        if (!std::isfinite(x) || x < lo || x > hi || (open_lo && x == lo))
            error(name, "must be in " + std::string(open_lo ? "(" : "[") + std::to_string(lo) +
                            ", " + std::to_string(hi) + "]");
        return x;
    }

    bool boolean(const char *name, bool fallback) {
        const json *v = find(name);
        if (!v) return fallback;
        if (!v->is_boolean()) error(name, "must be true or false");
        return v->get<bool>();
    }

    std::string string(const char *name, const std::string &fallback,
                       const std::vector<std::string> &allowed) {
        const json *v = find(name);
        if (!v) return fallback;
        if (!v->is_string()) error(name, "must be a string");
        std::string s = v->get<std::string>();
        for (const std::string &a : allowed)
            if (s == a) return s;
        std::string list;
        for (const std::string &a : allowed) list += (list.empty() ? "" : ", ") + a;
        error(name, "unknown value \"" + s + "\" (known: " + list + ")");
    }

    std::vector<size_t> sizes(const char *name, std::vector<size_t> fallback, size_t hi) {
        const json *v = find(name);
        if (!v) return fallback;
        if (!v->is_array() || v->empty() || v->size() > max_depth)
            error(name, "must be a non-empty list of at most " + std::to_string(max_depth) +
                            " integers");
        std::vector<size_t> out;
        for (const json &e : *v) {
            if (!e.is_number_integer() || e.get<int64_t>() < 1 || e.get<uint64_t>() > hi)
                error(name, "entries must be integers in 1.." + std::to_string(hi));
            out.push_back(e.get<size_t>());
        }
        return out;
    }

    const json *find(const char *name) {
        used_.insert(name);
        auto it = object_.find(name);
        return it == object_.end() ? nullptr : &*it;
    }

    [[noreturn]] void error(const std::string &field, const std::string &what) const {
        spec_error(where_, "field \"" + field + "\" " + what);
    }

    void finish() const {
        for (auto it = object_.begin(); it != object_.end(); ++it)
            if (!used_.count(it.key())) spec_error(where_, "unknown field \"" + it.key() + "\"");
    }

    const std::string &where() const { return where_; }

private:
    const json &object_;
    std::string where_;
    std::set<std::string> used_;
};

const std::vector<std::string> activation_names = {"relu", "leaky_relu", "elu", "tanh",
                                                   "softplus"};

Activation activation_from_name(const std::string &name) {
    for (size_t k = 0; k < activation_names.size(); ++k)
        if (activation_names[k] == name) return (Activation)k;
    fail(Status::internal, "unknown activation " + name);
}

// Fisher-Yates with Philox draws, so a seed gives the same order everywhere.
std::vector<int> random_permutation(size_t n, uint64_t seed, uint64_t stream) {
    std::vector<int> p(n);
    for (size_t j = 0; j < n; ++j) p[j] = (int)j;
    for (size_t j = n; j > 1; --j) {
        size_t k = (size_t)(philox_uniform(philox4x32_10(seed, stream, j).v[0]) * (float)j);
        std::swap(p[j - 1], p[k < j ? k : j - 1]);
    }
    return p;
}

// Streams for the random parts of transform number `index`.
uint64_t mask_stream(size_t index) { return 0x6d61736b00000000ull + index; }
uint64_t perm_stream(size_t index) { return 0x7065726d00000000ull + index; }

std::vector<float> structured_mask(const std::string &kind, size_t dim, int parity) {
    std::vector<float> m(dim);
    for (size_t j = 0; j < dim; ++j) {
        bool first = kind == "alternate" ? j % 2 == 0 : j < dim / 2;
        m[j] = (first != (parity == 1)) ? 1.0f : 0.0f;
    }
    return m;
}

void parse_coupling(Fields &f, TransformSpec &t, const ModelSpec &m, size_t index, uint64_t seed) {
    const json *mask = f.find("mask");
    t.parity = (int)f.size("parity", 0, 0, 1);
    if (!mask || mask->is_string()) {
        std::string kind = mask ? mask->get<std::string>() : "alternate";
        if (kind == "alternate" || kind == "half") {
            t.mask_kind = kind;
            t.mask = structured_mask(kind, m.dim, t.parity);
        } else if (kind == "random") {
            // A random half of the coordinates passes through.
            std::vector<int> p = random_permutation(m.dim, seed, mask_stream(index));
            t.mask_kind = "explicit";
            t.mask.assign(m.dim, 0.0f);
            for (size_t j = 0; j < m.dim / 2; ++j) t.mask[p[j]] = 1.0f;
            if (t.parity)
                for (float &v : t.mask) v = 1.0f - v;
            t.parity = 0;
        } else {
            f.error("mask", "unknown value \"" + kind + "\" (known: alternate, half, random, "
                            "or a list of 0/1 per dimension)");
        }
    } else {
        if (!mask->is_array() || mask->size() != m.dim)
            f.error("mask", "must have one 0/1 entry per dimension (" + std::to_string(m.dim) + ")");
        for (const json &e : *mask) {
            if (!e.is_number_integer() || (e.get<int64_t>() != 0 && e.get<int64_t>() != 1))
                f.error("mask", "entries must be 0 or 1");
            t.mask.push_back(e.get<int64_t>() == 1 ? 1.0f : 0.0f);
        }
        if (t.parity)
            for (float &v : t.mask) v = 1.0f - v;
        t.mask_kind = "explicit";
        t.parity = 0;
    }
    t.hidden = f.sizes("hidden", {64, 64}, max_width);
    t.activation = activation_from_name(f.string("activation", "relu", activation_names));
}

// A JSON list holding each of 0..dim-1 exactly once (field `name` of f).
std::vector<int> permutation_list(const Fields &f, const char *name, const json &v, size_t dim) {
    const std::string wrong = "must list each of 0.." + std::to_string(dim - 1) + " once";
    if (!v.is_array() || v.size() != dim) f.error(name, wrong);
    std::vector<bool> seen(dim, false);
    std::vector<int> out;
    for (const json &e : v) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<uint64_t>() >= dim ||
            seen[e.get<size_t>()])
            f.error(name, wrong);
        seen[e.get<size_t>()] = true;
        out.push_back(e.get<int>());
    }
    return out;
}

void parse_permutation(Fields &f, TransformSpec &t, const ModelSpec &m, size_t index,
                       uint64_t seed) {
    const json *perm = f.find("perm");
    if (!perm) {
        t.perm = random_permutation(m.dim, seed, perm_stream(index));
        return;
    }
    t.perm = permutation_list(f, "perm", *perm, m.dim);
}

const std::vector<std::string> transform_types = {
    "affine_coupling", "additive_coupling", "diagonal_scale", "batch_norm",
    "reverse",         "permutation",       "dequantize",     "logit",
    "made_affine",
    "actnorm",         "invertible_linear", "planar",         "radial"};

// made_affine: one Gaussian autoregressive layer (MAF or IAF) on a MADE.
uint64_t made_stream(size_t index) { return 0x6d61646500000000ull + index; }

// The MADE fields shared by made_affine and the made_mog base: hidden,
// activation, order, mask_seed. `index` keys the random order and mask seed.
void parse_made_net(Fields &f, TransformSpec &t, const ModelSpec &m, size_t index,
                    uint64_t seed) {
    t.hidden = f.sizes("hidden", {64, 64}, max_width);
    t.activation = activation_from_name(f.string("activation", "relu", activation_names));
    const json *order = f.find("order");
    if (!order || order->is_string()) {
        std::string kind = order ? order->get<std::string>() : "natural";
        if (kind == "natural" || kind == "reverse") {
            for (size_t j = 0; j < m.dim; ++j)
                t.order.push_back((int)(kind == "natural" ? j : m.dim - 1 - j));
        } else if (kind == "random") {
            t.order = random_permutation(m.dim, seed, perm_stream(index));
        } else {
            f.error("order", "unknown value \"" + kind + "\" (known: natural, reverse, random, "
                             "or a list of the dimensions in order)");
        }
    } else {
        t.order = permutation_list(f, "order", *order, m.dim);
    }
    // The hidden degrees come from mask_seed; absent, it is drawn from the
    // model seed and written out in the expanded spec.
    t.mask_seed = f.has("mask_seed")
                      ? (uint64_t)f.size("mask_seed", 0, 0, 0xffffffffull)
                      : philox4x32_10(seed, made_stream(index), 0).v[0];
    if (m.context_dim && t.hidden.empty())
        f.error("hidden", "a conditional MADE needs a hidden layer");
}

void parse_made_affine(Fields &f, TransformSpec &t, const ModelSpec &m, size_t index,
                       uint64_t seed) {
    t.direction = f.string("direction", "maf", {"maf", "iaf"});
    parse_made_net(f, t, m, index, seed);
}

const std::vector<std::string> agnostic_names = {"none", "order", "connectivity", "both"};

// The made_mog base draws its random order and mask seed as if it were
// transform number base_index (past every real transform).
constexpr size_t base_index = max_transforms + 1;

TransformSpec parse_transform(const json &j, const ModelSpec &m, size_t index, uint64_t seed) {
    Fields f(j, "transforms[" + std::to_string(index) + "]");
    TransformSpec t;
    if (!f.has("type")) spec_error(f.where(), "missing field \"type\"");
    t.type = f.string("type", "", transform_types);
    if (t.type == "affine_coupling" || t.type == "additive_coupling") {
        parse_coupling(f, t, m, index, seed);
    } else if (t.type == "batch_norm") {
        t.momentum = f.number("momentum", 0.1, 0.0, 1.0, true);
        t.eps = f.number("eps", 1e-5, 0.0, 1.0, true);
    } else if (t.type == "reverse") {
        for (size_t j = 0; j < m.dim; ++j) t.perm.push_back((int)(m.dim - 1 - j));
    } else if (t.type == "permutation") {
        parse_permutation(f, t, m, index, seed);
    } else if (t.type == "dequantize") {
        if (index != 0) spec_error(f.where(), "dequantize must be the first transform");
        t.levels = (double)f.size("levels", 256, 2, 65536);
    } else if (t.type == "logit") {
        t.alpha = f.number("alpha", 0.05, 0.0, 0.499);
    } else if (t.type == "made_affine") {
        parse_made_affine(f, t, m, index, seed);
    } else if (t.type == "invertible_linear") {
        // LU: P is a random permutation from the model seed unless given.
        t.lu = f.boolean("lu", true);
        if (t.lu) parse_permutation(f, t, m, index, seed);
    }
    f.finish();
    return t;
}

// {"type": ...} objects that name the base distribution ("mog" also takes
// "components"; "made_mog" components and the MADE fields); sets
// m.base_components (and m.base_made).
std::string parse_base_object(const json &b, ModelSpec &m, uint64_t seed) {
    Fields base(b, "base");
    if (!base.has("type")) spec_error("base", "missing field \"type\"");
    std::string type = base.string("type", "", {"normal", "logistic", "mog", "made_mog"});
    if (type == "mog" || type == "made_mog") {
        m.base_components = base.size("components", type == "mog" ? 8 : 10, 1, 4096);
        if (m.base_components * m.dim > max_dim_times_transforms)
            base.error("components", "make the model too large");
    }
    if (type == "made_mog") {
        parse_made_net(base, m.base_made, m, base_index, seed);
        m.base_made.agnostic = base.string("agnostic", "none", agnostic_names);
        m.base_made.ensemble = base.size("ensemble", 1, 1, 64);
        if (m.base_made.ensemble > 1 && m.base_made.agnostic == "none")
            base.error("ensemble", "needs \"agnostic\" training (with fixed masks every member is the same)");
    }
    base.finish();
    return type;
}

std::string parse_base(Fields &f, const std::string &fallback, ModelSpec &m, uint64_t seed) {
    const json *b = f.find("base");
    if (!b) return fallback;
    return parse_base_object(*b, m, seed);
}

void parse_dims(Fields &f, ModelSpec &m) {
    if (!f.has("dim")) spec_error(f.where(), "missing field \"dim\"");
    m.dim = f.size("dim", 0, 1, max_dim);
    m.context_dim = f.size("context_dim", 0, 0, max_dim);
}

// "maf", "iaf" (layers of made_affine, the order reversed from one layer to
// the next, or random orders) and "made" (one MAF layer: MADE as a density
// model with a standard normal base).
ModelSpec expand_autoregressive_preset(Fields &f, const std::string &preset, uint64_t seed) {
    ModelSpec m;
    parse_dims(f, m);
    const bool made = preset == "made";
    size_t layers = made ? 1 : f.size("layers", 5, 1, 1000);
    if (2 * layers * m.dim > max_dim_times_transforms) f.error("layers", "make the model too large");
    std::vector<size_t> hidden = f.sizes("hidden", {64, 64}, max_width);
    std::string activation = f.string("activation", "relu", activation_names);
    std::string order = f.string("order", "alternate", {"alternate", "random"});
    bool batch_norm = !made && f.boolean("batch_norm", false);
    // MADE MoG ("made" with components > 1) and MAF MoG ("maf" with
    // components): a made_mog base (MADE MoG: no made_affine layers).
    size_t components = 0;
    if (preset != "iaf") {
        if (f.has("components") && f.has("mog"))
            f.error("mog", "give either \"components\" or \"mog\", not both");
        components = f.has("mog") ? f.size("mog", 0, 1, 4096) : f.size("components", 0, 1, 4096);
        bool agnostic = f.has("agnostic") || f.has("ensemble");
        // One Gaussian per dimension is the plain MADE layer, unless it
        // trains agnostically: then it is a made_mog base of one component.
        if (made && components == 1 && !agnostic) components = 0;
        if (made && components == 0 && agnostic) components = 1;
        if (components && f.has("base"))
            f.error("base", "cannot be given with \"components\" (the base is made_mog)");
    }
    if (f.has("agnostic") && !components)
        f.error("agnostic", "needs \"components\" (only the made_mog base trains agnostically)");
    if (f.has("ensemble") && !components)
        f.error("ensemble", "needs \"components\" (only the made_mog base has an ensemble)");
    if (components) {
        if (made) layers = 0;
        json base = {{"type", "made_mog"},
                     {"components", components},
                     {"agnostic", f.string("agnostic", "none", agnostic_names)},
                     {"ensemble", f.size("ensemble", 1, 1, 64)},
                     {"order", order == "random" ? "random" : layers % 2 ? "reverse" : "natural"},
                     {"hidden", hidden},
                     {"activation", activation}};
        m.base = parse_base_object(base, m, seed);
    } else {
        m.base = parse_base(f, "normal", m, seed);
    }
    json transforms = json::array();
    if (f.has("dequantize"))
        transforms.push_back({{"type", "dequantize"},
                              {"levels", f.size("dequantize", 256, 2, 65536)}});
    if (f.has("logit"))
        transforms.push_back({{"type", "logit"}, {"alpha", f.number("logit", 0.05, 0.0, 0.499)}});
    for (size_t l = 0; l < layers; ++l) {
        transforms.push_back({{"type", "made_affine"},
                              {"direction", preset == "iaf" ? "iaf" : "maf"},
                              {"order", order == "random" ? "random" : l % 2 ? "reverse" : "natural"},
                              {"hidden", hidden},
                              {"activation", activation}});
        if (batch_norm && l + 1 < layers) transforms.push_back({{"type", "batch_norm"}});
    }
    f.finish();
    for (size_t k = 0; k < transforms.size(); ++k)
        m.transforms.push_back(parse_transform(transforms[k], m, k, seed));
    return m;
}

// "glow": layers of actnorm -> invertible_linear (LU unless "lu": false) ->
// affine_coupling (half mask, parity alternating); "planar" / "radial":
// layers of planar or radial flows.
ModelSpec expand_glow_preset(Fields &f, const std::string &preset, uint64_t seed) {
    ModelSpec m;
    parse_dims(f, m);
    const bool glow = preset == "glow";
    if (glow && m.dim < 2) f.error("dim", "must be at least 2 for a coupling preset");
    if (!glow && m.context_dim) f.error("context_dim", "must be 0: planar and radial flows take no context");
    size_t layers = f.size("layers", glow ? 8 : 16, 1, 1000);
    if (3 * layers * m.dim > max_dim_times_transforms) f.error("layers", "make the model too large");
    std::vector<size_t> hidden;
    std::string activation;
    bool lu = true;
    if (glow) {
        hidden = f.sizes("hidden", {64, 64}, max_width);
        activation = f.string("activation", "relu", activation_names);
        lu = f.boolean("lu", true);
    }
    m.base = parse_base(f, "normal", m, seed);
    json transforms = json::array();
    for (size_t l = 0; l < layers; ++l) {
        if (!glow) {
            transforms.push_back({{"type", preset}});
            continue;
        }
        transforms.push_back({{"type", "actnorm"}});
        transforms.push_back({{"type", "invertible_linear"}, {"lu", lu}});
        transforms.push_back({{"type", "affine_coupling"},
                              {"mask", "half"},
                              {"parity", l % 2},
                              {"hidden", hidden},
                              {"activation", activation}});
    }
    f.finish();
    for (size_t k = 0; k < transforms.size(); ++k)
        m.transforms.push_back(parse_transform(transforms[k], m, k, seed));
    return m;
}

ModelSpec expand_preset(Fields &f, uint64_t seed) {
    if (const json *p = f.find("preset"); p && p->is_string()) {
        const std::string name = p->get<std::string>();
        if (name == "glow" || name == "planar" || name == "radial")
            return expand_glow_preset(f, name, seed);
        if (name == "maf" || name == "iaf" || name == "made")
            return expand_autoregressive_preset(f, name, seed);
    }
    std::string preset = f.string("preset", "", {"realnvp", "nice"});
    ModelSpec m;
    parse_dims(f, m);
    if (m.dim < 2) f.error("dim", "must be at least 2 for a coupling preset");
    bool nice = preset == "nice";
    size_t layers = f.size("layers", nice ? 4 : 8, 1, 1000);
    if (2 * layers * m.dim > max_dim_times_transforms) f.error("layers", "make the model too large");
    std::vector<size_t> hidden = f.sizes("hidden", {64, 64}, max_width);
    std::string activation = f.string("activation", "relu", activation_names);
    bool batch_norm = f.boolean("batch_norm", false);
    m.base = parse_base(f, nice ? "logistic" : "normal", m, seed);

    json transforms = json::array();
    if (f.has("dequantize"))
        transforms.push_back({{"type", "dequantize"},
                              {"levels", f.size("dequantize", 256, 2, 65536)}});
    if (f.has("logit"))
        transforms.push_back({{"type", "logit"}, {"alpha", f.number("logit", 0.05, 0.0, 0.499)}});
    for (size_t l = 0; l < layers; ++l) {
        transforms.push_back({{"type", nice ? "additive_coupling" : "affine_coupling"},
                              {"mask", "alternate"},
                              {"parity", l % 2},
                              {"hidden", hidden},
                              {"activation", activation}});
        if (batch_norm && l + 1 < layers) transforms.push_back({{"type", "batch_norm"}});
    }
    if (nice) transforms.push_back({{"type", "diagonal_scale"}});
    f.finish();
    for (size_t k = 0; k < transforms.size(); ++k)
        m.transforms.push_back(parse_transform(transforms[k], m, k, seed));
    return m;
}

json parse_json(const std::string &text, Status status, const char *what) {
    // Refuse deep nesting before building values: destroying a deeply nested
    // json recurses.
    bool too_deep = false;
    json j = json::parse(
        text,
        [&too_deep](int depth, json::parse_event_t, json &) {
            too_deep |= depth > 64;
            return !too_deep;
        },
        false);
    if (j.is_discarded()) fail(status, std::string(what) + ": not valid JSON");
    if (too_deep) fail(status, std::string(what) + ": JSON nested more than 64 levels deep");
    return j;
}

} // namespace

ModelSpec parse_model_spec(const std::string &text, uint64_t seed) {
    json j = parse_json(text, Status::spec, "spec");
    Fields f(j, "model");
    if (f.has("preset")) return expand_preset(f, seed);

    ModelSpec m;
    parse_dims(f, m);
    m.base = parse_base(f, "normal", m, seed);
    const json *transforms = f.find("transforms");
    if (!transforms || !transforms->is_array())
        spec_error("model", "field \"transforms\" must be a list (or give a \"preset\")");
    if (transforms->size() > max_transforms)
        spec_error("model", "more than " + std::to_string(max_transforms) + " transforms");
    if (transforms->size() * m.dim > max_dim_times_transforms)
        spec_error("model", "too large: dim times the number of transforms exceeds " +
                                std::to_string(max_dim_times_transforms));
    f.finish();
    for (size_t k = 0; k < transforms->size(); ++k)
        m.transforms.push_back(parse_transform((*transforms)[k], m, k, seed));
    return m;
}

std::string model_spec_json(const ModelSpec &m) {
    json transforms = json::array();
    for (const TransformSpec &t : m.transforms) {
        json j = {{"type", t.type}};
        if (t.type == "affine_coupling" || t.type == "additive_coupling") {
            if (t.mask_kind == "explicit") {
                json mask = json::array();
                for (float v : t.mask) mask.push_back(v == 1.0f ? 1 : 0);
                j["mask"] = mask;
            } else {
                j["mask"] = t.mask_kind;
                j["parity"] = t.parity;
            }
            j["hidden"] = t.hidden;
            j["activation"] = activation_names[(size_t)t.activation];
        } else if (t.type == "batch_norm") {
            j["momentum"] = t.momentum;
            j["eps"] = t.eps;
        } else if (t.type == "permutation") {
            j["perm"] = t.perm;
        } else if (t.type == "dequantize") {
            j["levels"] = (int)t.levels;
        } else if (t.type == "logit") {
            j["alpha"] = t.alpha;
        } else if (t.type == "invertible_linear") {
            j["lu"] = t.lu;
            if (t.lu) j["perm"] = t.perm;
        } else if (t.type == "made_affine") {
            j["direction"] = t.direction;
            j["order"] = t.order;
            j["mask_seed"] = t.mask_seed;
            j["hidden"] = t.hidden;
            j["activation"] = activation_names[(size_t)t.activation];
        }
        transforms.push_back(j);
    }
    json base = {{"type", m.base}};
    if (m.base == "mog" || m.base == "made_mog") base["components"] = m.base_components;
    if (m.base == "made_mog") {
        base["order"] = m.base_made.order;
        base["mask_seed"] = m.base_made.mask_seed;
        base["hidden"] = m.base_made.hidden;
        base["activation"] = activation_names[(size_t)m.base_made.activation];
        base["agnostic"] = m.base_made.agnostic;
        base["ensemble"] = m.base_made.ensemble;
    }
    json out = {{"dim", m.dim},
                {"context_dim", m.context_dim},
                {"base", base},
                {"transforms", transforms}};
    return out.dump();
}

OptimizerConfig parse_optimizer_config(const std::string &text) {
    json j = parse_json(text, Status::spec, "optimizer");
    Fields f(j, "optimizer");
    OptimizerConfig c;
    c.type = f.string("type", "adam", {"adam", "adamw", "sgd"});
    c.lr = f.number("lr", c.type == "sgd" ? 1e-2 : 1e-3, 0.0, 1e6, true);
    c.weight_decay = f.number("weight_decay", 0.0, 0.0, 1e6);
    c.clip_grad_norm = f.number("clip_grad_norm", 0.0, 0.0, 1e30);
    if (c.type == "sgd") {
        c.momentum = f.number("momentum", 0.0, 0.0, 1.0);
        c.nesterov = f.boolean("nesterov", false);
        if (c.nesterov && c.momentum == 0.0f) f.error("nesterov", "needs a momentum > 0");
    } else {
        if (const json *betas = f.find("betas")) {
            if (!betas->is_array() || betas->size() != 2 || !(*betas)[0].is_number() ||
                !(*betas)[1].is_number())
                f.error("betas", "must be a list of two numbers");
            double b1 = (*betas)[0].get<double>(), b2 = (*betas)[1].get<double>();
            if (!(b1 >= 0.0 && b1 < 1.0 && b2 >= 0.0 && b2 < 1.0))
                f.error("betas", "must each be in [0, 1)");
            c.beta1 = b1;
            c.beta2 = b2;
        }
        c.eps = f.number("eps", 1e-8, 0.0, 1.0, true);
    }
    f.finish();
    return c;
}

std::string optimizer_config_json(const OptimizerConfig &c) {
    json j = {{"type", c.type},
              {"lr", c.lr},
              {"weight_decay", c.weight_decay},
              {"clip_grad_norm", c.clip_grad_norm}};
    if (c.type == "sgd") {
        j["momentum"] = c.momentum;
        j["nesterov"] = c.nesterov;
    } else {
        j["betas"] = {c.beta1, c.beta2};
        j["eps"] = c.eps;
    }
    return j.dump();
}

} // namespace flow
