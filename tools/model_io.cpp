#include "model_io.h"

#include <cstdio>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common.h"

using nlohmann::json;

namespace cli {

flow_device parse_device(const std::string &name) {
    if (name == "cpu") return FLOW_DEVICE_CPU;
    if (name == "cuda") {
        if (!flow_device_available(FLOW_DEVICE_CUDA))
            fail("--device cuda: no CUDA device is available (this build or machine has none)");
        return FLOW_DEVICE_CUDA;
    }
    fail("--device: unknown device \"" + name + "\" (cpu or cuda)");
}

ModelPtr create_model(const std::string &spec, flow_device device, uint64_t seed) {
    flow_model *m = nullptr;
    check(flow_model_create(&m, spec.c_str(), device, seed), "model spec");
    return ModelPtr(m);
}

ModelPtr load_model(const std::string &path, flow_device device) {
    if (!file_exists(path)) fail(path + ": no such file");
    flow_model *m = nullptr;
    flow_status s = flow_model_load(&m, path.c_str(), device);
    if (s != FLOW_OK) {
        std::string msg = flow_last_error();
        // The library's messages start "model file: ..." or name the path.
        fail(msg.find(path) == std::string::npos ? path + ": " + msg : msg);
    }
    return ModelPtr(m);
}

void save_model(const flow_model *m, const std::string &path) {
    check(flow_model_save(m, path.c_str()), "saving " + path);
}

std::string model_spec(const flow_model *m) {
    size_t len = 0;
    flow_model_spec(m, nullptr, 0, &len);
    std::string s(len + 1, '\0');
    check(flow_model_spec(m, &s[0], s.size(), &len), "model spec");
    s.resize(len);
    return s;
}

int model_levels(const flow_model *m) {
    json spec = json::parse(model_spec(m), nullptr, false);
    if (!spec.is_object() || !spec.contains("transforms") || !spec["transforms"].is_array() ||
        spec["transforms"].empty())
        return 0;
    const json &t = spec["transforms"][0];
    if (t.value("type", "") != "dequantize") return 0;
    return t.value("levels", 256);
}

std::map<std::string, std::string> model_file_metadata(const std::string &path) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) fail(path + ": " + std::strerror(errno));
    unsigned char b[8];
    std::map<std::string, std::string> out;
    std::string header;
    bool ok = std::fread(b, 1, 8, f) == 8;
    uint64_t n = 0;
    for (int k = 7; ok && k >= 0; --k) n = n << 8 | b[k];
    ok = ok && n > 0 && n <= (100u << 20);
    if (ok) {
        header.resize(n);
        ok = std::fread(&header[0], 1, n, f) == n;
    }
    std::fclose(f);
    if (!ok) fail(path + ": not a safetensors file (bad header length)");
    json j = json::parse(header, nullptr, false);
    if (!j.is_object()) fail(path + ": not a safetensors file (header is not a JSON object)");
    auto it = j.find("__metadata__");
    if (it != j.end() && it->is_object())
        for (auto &kv : it->items())
            if (kv.value().is_string()) out[kv.key()] = kv.value().get<std::string>();
    return out;
}

std::string sidecar_path(const std::string &model_path) { return model_path + ".json"; }

std::vector<size_t> parse_shape(const std::string &text, const std::string &what) {
    std::vector<size_t> shape;
    size_t start = 0;
    for (;;) {
        size_t x = text.find('x', start);
        shape.push_back((size_t)parse_int(text.substr(start, x == std::string::npos ? x : x - start),
                                          what, 1, 1 << 20));
        if (x == std::string::npos) break;
        start = x + 1;
    }
    return shape;
}

std::string shape_string(const std::vector<size_t> &shape) {
    std::string s;
    for (size_t d : shape) s += (s.empty() ? "" : "x") + std::to_string(d);
    return s;
}

static double number_or_nan(const json &j, const char *key) {
    auto it = j.find(key);
    return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

Sidecar read_sidecar(const std::string &model_path) {
    Sidecar s;
    std::string path = sidecar_path(model_path);
    if (!file_exists(path)) return s;
    json j = json::parse(read_file(path), nullptr, false);
    if (!j.is_object() || !j.contains("flowlib_cli")) fail(path + ": not a flowlib model sidecar");
    try {
        s.present = true;
        const json &d = j.value("data", json::object());
        s.source = d.value("source", "");
        s.format = d.value("format", "");
        s.shape = d.value("shape", std::vector<size_t>{});
        s.levels = d.value("levels", 0);
        s.columns = d.value("columns", std::vector<size_t>{});
        s.context_columns = d.value("context_columns", std::vector<size_t>{});
        s.names = d.value("names", std::vector<std::string>{});
        const json &t = j.value("train", json::object());
        s.args = t.value("args", std::map<std::string, std::string>{});
        s.position = t.value("position", (uint64_t)0);
        s.steps = t.value("steps", (uint64_t)0);
        s.best_val = number_or_nan(t, "best_val");
        s.best_step = t.value("best_step", (uint64_t)0);
        s.bad_evals = t.value("bad_evals", (uint64_t)0);
        s.train_nll = number_or_nan(t, "train_nll");
        s.val_nll = number_or_nan(t, "val_nll");
        s.seconds = t.value("seconds", 0.0);
    } catch (const json::exception &e) {
        fail(path + ": malformed sidecar: " + e.what());
    }
    return s;
}

void write_sidecar(const std::string &model_path, const Sidecar &s) {
    json d = {{"source", s.source}, {"format", s.format}, {"shape", s.shape},
              {"levels", s.levels}, {"columns", s.columns}, {"context_columns", s.context_columns},
              {"names", s.names}};
    json t = {{"args", s.args}, {"position", s.position}, {"steps", s.steps},
              {"best_step", s.best_step}, {"bad_evals", s.bad_evals}, {"seconds", s.seconds}};
    // NaN is not JSON: leave unknown numbers out.
    if (std::isfinite(s.best_val)) t["best_val"] = s.best_val;
    if (std::isfinite(s.train_nll)) t["train_nll"] = s.train_nll;
    if (std::isfinite(s.val_nll)) t["val_nll"] = s.val_nll;
    json j = {{"flowlib_cli", 1}, {"data", d}, {"train", t}};
    std::string text = j.dump(1) + "\n";
    write_file_atomic(sidecar_path(model_path), text.data(), text.size());
}

} // namespace cli
