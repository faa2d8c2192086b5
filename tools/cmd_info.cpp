// flowlib info: what a model file holds.
#include <cmath>
#include <cstdio>
#include <cstring>

#include <sys/stat.h>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "model_io.h"

namespace cli {

namespace {

const CommandSpec spec = {
    "info",
    "[options] MODEL",
    "Prints the spec, parameter count, data shape and format version of a model\n"
    "file, what it was trained on and how well (from its MODEL.json sidecar),\n"
    "and a checksum of its parameters (equal checksums: equal parameters).",
    {
        {"spec", 0, nullptr, "print only the expanded spec (JSON)"},
    },
    nullptr};

// FNV-1a over the parameters' bytes.
uint64_t checksum(const std::vector<float> &p) {
    uint64_t h = 0xcbf29ce484222325ull;
    const unsigned char *b = (const unsigned char *)p.data();
    for (size_t k = 0; k < p.size() * sizeof(float); ++k) h = (h ^ b[k]) * 0x100000001b3ull;
    return h;
}

} // namespace

int cmd_info(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }
    a.expect_positional(1, 1, "MODEL");
    const std::string &path = a.positional()[0];
    ModelPtr model = load_model(path, FLOW_DEVICE_CPU);
    flow_model *m = model.get();
    std::string spec_text = model_spec(m);
    if (a.flag("spec")) {
        std::printf("%s\n", spec_text.c_str());
        return 0;
    }
    auto meta = model_file_metadata(path);
    Sidecar info = read_sidecar(path);
    size_t dim = flow_model_dim(m), count = flow_model_param_count(m);
    std::vector<float> params(count);
    check(flow_model_get_params(m, params.data(), count), "parameters");
    struct stat st;
    double mb = stat(path.c_str(), &st) == 0 ? (double)st.st_size / 1e6 : 0;
    int levels = model_levels(m);

    std::printf("file:        %s (%.2f MB)\n", path.c_str(), mb);
    std::printf("format:      flowlib model format %s (safetensors), written by flowlib %s\n",
                meta.count("flowlib.format") ? meta["flowlib.format"].c_str() : "?",
                meta.count("flowlib.version") ? meta["flowlib.version"].c_str() : "?");
    std::printf("dim:         %zu", dim);
    if (info.shape.size() > 1) std::printf(" (images of %s)", shape_string(info.shape).c_str());
    if (levels) std::printf(", discrete data of %d levels", levels);
    std::printf("\ncontext_dim: %zu\n", flow_model_context_dim(m));
    std::printf("parameters:  %zu (checksum %016llx)\n", count, (unsigned long long)checksum(params));
    std::printf("steps:       %llu\n", (unsigned long long)flow_model_step_count(m));
    if (meta.count("flowlib.optimizer")) std::printf("optimizer:   %s\n", meta["flowlib.optimizer"].c_str());
    if (info.present) {
        std::printf("data:        %s (%s)\n", info.source.c_str(), info.format.c_str());
        if (std::isfinite(info.best_val)) {
            std::printf("validation:  NLL %.4f nats", info.best_val);
            if (levels) std::printf(" = %.4f bits/dim", info.best_val / ((double)dim * std::log(2.0)));
            std::printf(" (best, at step %llu)\n", (unsigned long long)info.best_step);
        }
        std::printf("trained for: %s\n", human_duration(info.seconds).c_str());
    } else {
        std::printf("sidecar:     none (%s): data shape and training record unknown\n", sidecar_path(path).c_str());
    }
    std::printf("spec:        %s\n", spec_text.c_str());
    return 0;
}

} // namespace cli
