// Models as the program handles them: an owning pointer, loading and saving
// with file-named errors, the "sidecar" that keeps what the library's model
// file does not (the shape of a data row, the columns, the training state).
//
// The sidecar of MODEL is MODEL.json, e.g. fmnist.safetensors.json:
//   {"flowlib_cli": 1,
//    "data": {"source": "...", "format": "idx", "shape": [28, 28], "levels": 256,
//             "columns": [0, 1], "context_columns": [], "names": ["x", "y"]},
//    "train": {"args": {...}, "position": 1234, "best_val": 1.23, ...}}
#pragma once

#include <flowlib.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace cli {

struct ModelFree {
    void operator()(flow_model *m) const { flow_model_free(m); }
};
using ModelPtr = std::unique_ptr<flow_model, ModelFree>;

flow_device parse_device(const std::string &name);
ModelPtr create_model(const std::string &spec, flow_device device, uint64_t seed);
ModelPtr load_model(const std::string &path, flow_device device);
void save_model(const flow_model *m, const std::string &path);

std::string model_spec(const flow_model *m);
// The levels of the model's dequantize transform, 0 when it has none.
int model_levels(const flow_model *m);

// The library metadata of a safetensors model file ("flowlib.format", ...),
// read from its header without loading the weights.
std::map<std::string, std::string> model_file_metadata(const std::string &path);

struct Sidecar {
    bool present = false;
    // data
    std::string source, format;
    std::vector<size_t> shape; // one row's shape, e.g. {28, 28}
    int levels = 0;
    std::vector<size_t> columns, context_columns;
    std::vector<std::string> names;
    // training state (for --resume)
    std::map<std::string, std::string> args;
    uint64_t position = 0;  // batches consumed
    uint64_t steps = 0;     // flow_model_step_count when saved
    double best_val = NAN;  // best validation NLL (nats per row)
    uint64_t best_step = 0;
    uint64_t bad_evals = 0; // validations since the best one
    double train_nll = NAN, val_nll = NAN;
    double seconds = 0;     // training time so far
};

std::string sidecar_path(const std::string &model_path);
// present = false when there is none; a malformed one is an error.
Sidecar read_sidecar(const std::string &model_path);
void write_sidecar(const std::string &model_path, const Sidecar &s);

// "28x28" -> {28, 28}.
std::vector<size_t> parse_shape(const std::string &text, const std::string &what);
std::string shape_string(const std::vector<size_t> &shape);

} // namespace cli
