// Model and optimizer specs: JSON in, validated structs out, and back to the
// expanded JSON from which the same model can always be rebuilt. Presets
// expand here into explicit transform lists; random masks and permutations
// are drawn here (from the model seed) and written out explicitly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/backend.h"

namespace flow {

struct TransformSpec {
    std::string type;
    // affine_coupling / additive_coupling
    std::string mask_kind;   // "alternate", "half" or "explicit"
    int parity = 0;          // flips an alternate/half mask
    std::vector<float> mask; // resolved mask, 1 = passed through
    std::vector<size_t> hidden;
    Activation activation = Activation::relu;
    // batch_norm
    double momentum = 0.1, eps = 1e-5;
    // permutation / reverse
    std::vector<int> perm;
    // dequantize
    double levels = 256;
    // logit
    double alpha = 0.05;
    // made_affine (MAF / IAF layer): order[k] = dimension modelled k-th;
    // mask_seed draws MADE's hidden degrees; direction "maf" or "iaf"
    std::vector<int> order;
    uint64_t mask_seed = 0;
    std::string direction = "maf";
    // made_mog base only: "none", "order", "connectivity" or "both": each
    // training step draws the MADE's order and/or hidden degrees afresh
    std::string agnostic = "none";
    // made_mog base only: evaluation averages the density over this many
    // mask draws (log-mean-exp); > 1 needs agnostic training
    size_t ensemble = 1;
    // invertible_linear: LU-parameterized (perm = its fixed P) or a plain matrix
    bool lu = true;
};

struct ModelSpec {
    size_t dim = 0;
    size_t context_dim = 0;
    std::string base = "normal"; // "normal", "logistic", "mog" or "made_mog"
    size_t base_components = 0;  // "mog", "made_mog": number of mixture components
    // "made_mog": the MADE that outputs the mixture of each dimension (its
    // order, mask_seed, hidden and activation; the other fields unused)
    TransformSpec base_made;
    std::vector<TransformSpec> transforms;
};

// Throws Error(Status::spec) naming the offending field.
ModelSpec parse_model_spec(const std::string &json, uint64_t seed);
std::string model_spec_json(const ModelSpec &spec);

struct OptimizerConfig {
    std::string type = "adam"; // "adam", "adamw" or "sgd"
    double lr = 1e-3;
    double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    double weight_decay = 0;
    double momentum = 0;
    bool nesterov = false;
    double clip_grad_norm = 0;
};

OptimizerConfig parse_optimizer_config(const std::string &json);
std::string optimizer_config_json(const OptimizerConfig &config);

} // namespace flow
