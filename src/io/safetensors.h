// Host-memory codec for the safetensors format: an 8-byte little-endian
// header length, a JSON header describing each tensor, then the raw tensor
// bytes. Only F32 tensors for now. Independent of tensors and backends so the
// model layer can convert to and from whatever storage it uses.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace flow {

struct SafetensorsEntry {
    std::string name;
    std::vector<size_t> shape; // empty: a scalar holding one value
    std::vector<float> data;   // row-major, product(shape) values
};

struct SafetensorsFile {
    std::map<std::string, std::string> metadata; // the header's "__metadata__"
    std::vector<SafetensorsEntry> tensors;
};

// Lays the tensors out contiguously in their order, the header padded with
// spaces so the data starts 8-byte aligned. Throws Status::invalid_argument
// for an empty, reserved or duplicate name, a shape that does not match the
// data, or names/metadata that are not valid UTF-8.
std::vector<uint8_t> safetensors_encode(const SafetensorsFile &f);

// Validates the whole file (sizes, JSON, dtypes, shapes, offsets, coverage of
// the data section) and throws Status::format with a precise message on any
// malformed or hostile input. Tensors come back sorted by data offset.
SafetensorsFile safetensors_decode(const uint8_t *bytes, size_t len);

} // namespace flow
