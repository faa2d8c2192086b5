// Saving and loading models as safetensors: every parameter and running
// statistic as a named tensor (readable from Python), the expanded spec and
// the training state in the header's metadata.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <map>

#include "core/error.h"
#include "flowlib_version.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace flow {

namespace {

const char *const format_version = "1";
const char *const optimizer_first = "optimizer.first";
const char *const optimizer_second = "optimizer.second";

void add_arena(SafetensorsFile &file, const ParamArena &arena, Backend &be) {
    std::vector<float> host(arena.count());
    be.download(arena.values(), host.data());
    for (const ParamInfo &info : arena.infos()) {
        const float *begin = host.data() + info.offset;
        file.tensors.push_back({info.name, info.shape,
                                std::vector<float>(begin, begin + shape_size(info.shape))});
    }
}

void add_tensor(SafetensorsFile &file, const char *name, const Tensor &t, Backend &be) {
    std::vector<float> host(t.size());
    be.download(t, host.data());
    file.tensors.push_back({name, {t.size()}, std::move(host)});
}

const std::string &metadata(const SafetensorsFile &file, const std::string &key) {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) fail(Status::format, "model file: no metadata \"" + key + "\"");
    return it->second;
}

uint64_t metadata_count(const SafetensorsFile &file, const std::string &key) {
    const std::string &s = metadata(file, key);
    if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
        fail(Status::format, "model file: metadata \"" + key + "\" is not a count");
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), nullptr, 10);
    if (errno) fail(Status::format, "model file: metadata \"" + key + "\" is out of range");
    return v;
}

// The file's tensors by name; take() hands each out once, checked, and
// finish() refuses any that nobody took.
class TensorTable {
public:
    explicit TensorTable(const SafetensorsFile &file) {
        for (const SafetensorsEntry &e : file.tensors) by_name_[e.name] = &e;
    }

    const std::vector<float> &take(const std::string &name, const std::vector<size_t> &shape) {
        auto it = by_name_.find(name);
        if (it == by_name_.end() || !it->second)
            fail(Status::format, "model file: tensor \"" + name + "\" is missing");
        const SafetensorsEntry &e = *it->second;
        if (e.shape != shape)
            fail(Status::format,
                 "model file: tensor \"" + name + "\" has the wrong shape for its spec");
        for (float v : e.data)
            if (!std::isfinite(v))
                fail(Status::format, "model file: tensor \"" + name + "\" holds non-finite values");
        it->second = nullptr;
        return e.data;
    }

    void load_arena(ParamArena &arena, Backend &be) {
        std::vector<float> host(arena.count());
        for (const ParamInfo &info : arena.infos()) {
            const std::vector<float> &data = take(info.name, info.shape);
            std::copy(data.begin(), data.end(), host.begin() + info.offset);
        }
        be.upload(arena.values(), host.data());
    }

    void load_tensor(const char *name, Tensor &t, Backend &be) {
        be.upload(t, take(name, {t.size()}).data());
    }

    void finish() const {
        for (const auto &kv : by_name_)
            if (kv.second)
                fail(Status::format, "model file: tensor \"" + kv.first + "\" is not part of its spec");
    }

private:
    std::map<std::string, const SafetensorsEntry *> by_name_;
};

} // namespace

std::vector<uint8_t> Model::save() const {
    SafetensorsFile file;
    file.metadata["flowlib.format"] = format_version;
    file.metadata["flowlib.version"] = FLOWLIB_VERSION_STRING;
    file.metadata["flowlib.spec"] = spec_json_;
    file.metadata["flowlib.seed"] = std::to_string(seed_);
    file.metadata["flowlib.steps"] = std::to_string(steps_);
    add_arena(file, params_, backend_);
    add_arena(file, buffers_, backend_);
    if (optimizer_) {
        file.metadata["flowlib.optimizer"] = optimizer_config_json(optimizer_->config());
        file.metadata["flowlib.optimizer_steps"] = std::to_string(optimizer_->steps());
        add_tensor(file, optimizer_first, optimizer_->first(), backend_);
        if (optimizer_->has_second()) add_tensor(file, optimizer_second, optimizer_->second(), backend_);
    }
    return safetensors_encode(file);
}

std::unique_ptr<Model> Model::load(Backend &be, const uint8_t *bytes, size_t len) {
    SafetensorsFile file = safetensors_decode(bytes, len);
    if (metadata(file, "flowlib.format") != format_version)
        fail(Status::format, "model file: format version \"" + metadata(file, "flowlib.format") +
                                 "\" is not supported (this library reads version " +
                                 format_version + ")");
    uint64_t seed = metadata_count(file, "flowlib.seed");
    ModelSpec spec;
    try {
        spec = parse_model_spec(metadata(file, "flowlib.spec"), seed);
    } catch (const Error &e) {
        fail(Status::format, std::string("model file: its spec is invalid: ") + e.what());
    }

    // Check the file's parameter count against the spec before allocating.
    std::unique_ptr<Model> m(new Model(be, std::move(spec), seed));
    size_t stored = 0;
    for (const SafetensorsEntry &e : file.tensors) stored += e.data.size();
    if (m->params_.count() + m->buffers_.count() > stored)
        fail(Status::format, "model file: holds fewer values than its spec needs");
    m->params_.allocate(be, seed);
    m->buffers_.allocate(be, seed);

    TensorTable table(file);
    table.load_arena(m->params_, be);
    table.load_arena(m->buffers_, be);
    m->steps_ = metadata_count(file, "flowlib.steps");
    if (file.metadata.count("flowlib.optimizer")) {
        OptimizerConfig config;
        try {
            config = parse_optimizer_config(metadata(file, "flowlib.optimizer"));
        } catch (const Error &e) {
            fail(Status::format, std::string("model file: its optimizer is invalid: ") + e.what());
        }
        m->optimizer_ = std::make_unique<Optimizer>(be, m->param_count(), config);
        m->optimizer_->restore_steps(metadata_count(file, "flowlib.optimizer_steps"));
        table.load_tensor(optimizer_first, m->optimizer_->first(), be);
        if (m->optimizer_->has_second())
            table.load_tensor(optimizer_second, m->optimizer_->second(), be);
    }
    table.finish();
    be.synchronize();
    return m;
}

std::unique_ptr<Model> Model::clone(Backend &be) const {
    std::vector<uint8_t> bytes = save();
    return load(be, bytes.data(), bytes.size());
}

} // namespace flow
