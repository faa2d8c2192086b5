#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace flow {
namespace {

using json = nlohmann::json;

constexpr uint64_t max_header_bytes = uint64_t(100) << 20;
constexpr int max_json_depth = 64; // a real header nests 3 deep
constexpr size_t f32_bytes = 4;
constexpr size_t max_size = std::numeric_limits<size_t>::max();
const char *const metadata_key = "__metadata__";

[[noreturn]] void format_error(const std::string &message) {
    fail(Status::format, "safetensors: " + message);
}

[[noreturn]] void argument_error(const std::string &message) {
    fail(Status::invalid_argument, "safetensors: " + message);
}

// A name for messages: quoted, and cut at a UTF-8 boundary so that a hostile
// 100 MiB name does not become a 100 MiB message.
std::string quote(const std::string &name) {
    constexpr size_t limit = 80;
    if (name.size() <= limit)
        return "'" + name + "'";
    size_t cut = limit;
    while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80)
        cut--;
    return "'" + name.substr(0, cut) + "...'";
}

// Byte-at-a-time so the result does not depend on the host's endianness;
// compilers turn these into single loads and stores.
uint64_t load_le64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void store_le64(uint8_t *p, uint64_t v) {
    for (int i = 0; i < 8; i++)
        p[i] = static_cast<uint8_t>(v >> (8 * i));
}

float load_f32(const uint8_t *p) {
    const uint32_t u = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 |
                       uint32_t(p[3]) << 24;
    float v;
    std::memcpy(&v, &u, sizeof v);
    return v;
}

void store_f32(uint8_t *p, float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof u);
    for (int i = 0; i < 4; i++)
        p[i] = static_cast<uint8_t>(u >> (8 * i));
}

// Byte size of an F32 tensor of this shape, or false on overflow. Zero dims
// do not hide the others: every dim product must fit, so code indexing with
// the shape's strides never overflows either.
bool f32_size(const std::vector<size_t> &shape, size_t *bytes) {
    size_t extent = 1;
    bool empty = false;
    for (size_t d : shape) {
        if (d == 0)
            empty = true;
        else if (extent > max_size / d)
            return false;
        else
            extent *= d;
    }
    if (extent > max_size / f32_bytes)
        return false;
    *bytes = empty ? 0 : extent * f32_bytes;
    return true;
}

bool to_size(const json &v, size_t *out) {
    // nlohmann stores every non-negative integer literal as unsigned, and
    // negative ones, floats and out-of-range integers otherwise.
    if (!v.is_number_unsigned() || v.get<uint64_t>() > max_size)
        return false;
    *out = static_cast<size_t>(v.get<uint64_t>());
    return true;
}

std::string shape_text(const std::vector<size_t> &shape) {
    std::string s = "[";
    for (size_t i = 0; i < shape.size(); i++)
        s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + "]";
}

json parse_header(const char *begin, const char *end) {
    // The format requires an object; checking the first byte also rejects a
    // leading BOM, which nlohmann would skip.
    if (begin == end || *begin != '{')
        format_error("header is not a JSON object");
    // nlohmann takes a NUL for the end of input and would ignore what follows.
    if (std::memchr(begin, '\0', static_cast<size_t>(end - begin)))
        format_error("header is not valid JSON: it contains a NUL byte");
    std::vector<std::set<std::string>> keys; // keys seen in each open object
    json::parser_callback_t check = [&](int depth, json::parse_event_t event, json &parsed) {
        switch (event) {
        case json::parse_event_t::object_start:
        case json::parse_event_t::array_start:
            // Bounds the parser's bookkeeping and the recursive destruction
            // of the parsed value.
            if (depth >= max_json_depth)
                format_error("header nests deeper than " + std::to_string(max_json_depth) +
                             " levels");
            if (event == json::parse_event_t::object_start)
                keys.emplace_back();
            break;
        case json::parse_event_t::key: // nlohmann would keep the last silently
            if (!keys.back().insert(parsed.get<std::string>()).second)
                format_error("duplicate key " + quote(parsed.get<std::string>()) + " in header");
            break;
        case json::parse_event_t::object_end:
            keys.pop_back();
            break;
        default:
            break;
        }
        return true;
    };
    try {
        return json::parse(begin, end, check);
    } catch (const json::exception &e) {
        format_error(std::string("header is not valid JSON: ") + e.what());
    }
}

std::map<std::string, std::string> read_metadata(const json &v) {
    if (!v.is_object())
        format_error("__metadata__ is not an object");
    std::map<std::string, std::string> metadata;
    for (auto it = v.begin(); it != v.end(); ++it) {
        if (!it.value().is_string())
            format_error("__metadata__ value of " + quote(it.key()) + " is not a string");
        metadata.emplace(it.key(), it.value().get<std::string>());
    }
    return metadata;
}

struct Located {
    SafetensorsEntry entry; // data still empty
    size_t begin, end;      // offsets in the data section
};

Located read_entry(const std::string &name, const json &v, size_t data_len) {
    const std::string what = "tensor " + quote(name);
    if (name.empty())
        format_error("tensor with an empty name");
    if (!v.is_object())
        format_error(what + " is not an object");
    for (auto it = v.begin(); it != v.end(); ++it)
        if (it.key() != "dtype" && it.key() != "shape" && it.key() != "data_offsets")
            format_error(what + " has unknown field " + quote(it.key()));
    for (const char *field : {"dtype", "shape", "data_offsets"})
        if (!v.contains(field))
            format_error(what + " has no " + field);

    const json &dtype = v["dtype"];
    if (!dtype.is_string())
        format_error(what + " has a dtype that is not a string");
    if (dtype.get<std::string>() != "F32")
        format_error("unsupported dtype " + quote(dtype.get<std::string>()) + " for " + what);

    Located t{{name, {}, {}}, 0, 0};
    const json &shape = v["shape"];
    if (!shape.is_array())
        format_error(what + " has a shape that is not an array");
    for (const json &d : shape) {
        size_t dim;
        if (!to_size(d, &dim))
            format_error(what + " has a shape dim " + d.dump() + " that is not a non-negative integer");
        t.entry.shape.push_back(dim);
    }
    size_t bytes;
    if (!f32_size(t.entry.shape, &bytes))
        format_error(what + " has shape " + shape_text(t.entry.shape) + " whose size overflows");

    const json &offsets = v["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !to_size(offsets[0], &t.begin) ||
        !to_size(offsets[1], &t.end))
        format_error(what + " has data_offsets " + offsets.dump() +
                     " that are not two non-negative integers");
    if (t.begin > t.end || t.end > data_len)
        format_error(what + " has data_offsets [" + std::to_string(t.begin) + ", " +
                     std::to_string(t.end) + "] outside the " + std::to_string(data_len) +
                     "-byte data section");
    if (t.end - t.begin != bytes)
        format_error(what + " of shape " + shape_text(t.entry.shape) + " needs " +
                     std::to_string(bytes) + " bytes but data_offsets span " +
                     std::to_string(t.end - t.begin));
    return t;
}

} // namespace

std::vector<uint8_t> safetensors_encode(const SafetensorsFile &f) {
    // ordered_json keeps __metadata__ first and the tensors in data order.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!f.metadata.empty())
        header[metadata_key] = f.metadata;
    size_t data_len = 0;
    for (const SafetensorsEntry &t : f.tensors) {
        const std::string what = "tensor " + quote(t.name);
        if (t.name.empty() || t.name == metadata_key)
            argument_error("invalid tensor name " + quote(t.name));
        size_t bytes;
        if (!f32_size(t.shape, &bytes) || bytes / f32_bytes != t.data.size())
            argument_error(what + " has shape " + shape_text(t.shape) + " but " +
                           std::to_string(t.data.size()) + " values");
        if (bytes > max_size - data_len)
            argument_error("tensors are too large");
        nlohmann::ordered_json entry = {{"dtype", "F32"},
                                        {"shape", t.shape},
                                        {"data_offsets", {data_len, data_len + bytes}}};
        if (!header.emplace(t.name, std::move(entry)).second)
            argument_error("duplicate " + what);
        data_len += bytes;
    }

    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::ordered_json::exception &) {
        argument_error("tensor names or metadata are not valid UTF-8");
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    if (data_len > max_size - 8 - text.size())
        argument_error("tensors are too large");

    std::vector<uint8_t> out(8 + text.size() + data_len);
    store_le64(out.data(), text.size());
    std::memcpy(out.data() + 8, text.data(), text.size());
    uint8_t *p = out.data() + 8 + text.size();
    for (const SafetensorsEntry &t : f.tensors)
        for (float v : t.data) {
            store_f32(p, v);
            p += f32_bytes;
        }
    return out;
}

SafetensorsFile safetensors_decode(const uint8_t *bytes, size_t len) {
    if (len < 8)
        format_error("file of " + std::to_string(len) + " bytes is too short for a header");
    const uint64_t header_len = load_le64(bytes);
    if (header_len > max_header_bytes)
        format_error("header length " + std::to_string(header_len) + " exceeds the limit of " +
                     std::to_string(max_header_bytes));
    if (header_len > len - 8)
        format_error("header length " + std::to_string(header_len) + " runs past the end of the " +
                     std::to_string(len) + "-byte file");
    const char *header = reinterpret_cast<const char *>(bytes + 8);
    const json root = parse_header(header, header + header_len);
    const uint8_t *data = bytes + 8 + header_len;
    const size_t data_len = len - 8 - static_cast<size_t>(header_len);

    SafetensorsFile f;
    std::vector<Located> located;
    for (auto it = root.begin(); it != root.end(); ++it) {
        if (it.key() == metadata_key)
            f.metadata = read_metadata(it.value());
        else
            located.push_back(read_entry(it.key(), it.value(), data_len));
    }

    // Sorted by offsets, each tensor must start where the previous ended and
    // the last must end at the end of the file: no overlaps and no holes.
    std::stable_sort(located.begin(), located.end(), [](const Located &a, const Located &b) {
        return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    size_t covered = 0;
    for (size_t i = 0; i <= located.size(); i++) {
        const size_t next = i < located.size() ? located[i].begin : data_len;
        if (next < covered)
            format_error("tensor " + quote(located[i].entry.name) + " overlaps tensor " +
                         quote(located[i - 1].entry.name));
        if (next > covered)
            format_error("bytes [" + std::to_string(covered) + ", " + std::to_string(next) +
                         ") of the data section belong to no tensor");
        if (i < located.size())
            covered = located[i].end;
    }

    f.tensors.reserve(located.size());
    for (Located &t : located) {
        t.entry.data.resize((t.end - t.begin) / f32_bytes);
        for (size_t i = 0; i < t.entry.data.size(); i++)
            t.entry.data[i] = load_f32(data + t.begin + i * f32_bytes);
        f.tensors.push_back(std::move(t.entry));
    }
    return f;
}

} // namespace flow
