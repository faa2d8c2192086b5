// Whole-file reads and crash-safe writes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace flow {

// Writes to a temporary file beside `path`, syncs it and renames it over
// `path`, so a crash leaves either the old file or the new one, never a
// partial one. On failure removes the temporary file and throws Status::io.
// The new file keeps the old one's permissions, or gets 0666 less the umask.
void write_file_atomic(const std::string &path, const void *data, size_t len);

// Reads a whole file. Throws Status::io if it cannot be opened or read and
// Status::format if it holds more than max_bytes.
std::vector<uint8_t> read_file(const std::string &path, size_t max_bytes);

} // namespace flow
