// Synthetic 2-D data sets of the flow literature, reproducible from a seed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace flow {

// The known names, comma separated.
extern const char *const toy_data_names;

// Throws Status::invalid_argument for an unknown name.
void toy_data(const std::string &name, size_t n, uint64_t seed, float *out);

} // namespace flow
