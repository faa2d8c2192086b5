// Safetensors codec and file helpers: round trips, the exact byte layout,
// and hostile input that must fail with Status::format, never crash.
#include <criterion/criterion.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"

using flow::SafetensorsEntry;
using flow::SafetensorsFile;
using flow::Status;

namespace {

float from_bits(uint32_t u) {
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

uint32_t bits(float f) {
    uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    return u;
}

SafetensorsFile sample() {
    SafetensorsFile f;
    f.metadata = {{"flowlib.format", "1"}, {"note", "caf\xc3\xa9 \"quoted\"\n"}};
    f.tensors.push_back({"w", {2, 3}, {1, -2, 3.5f, -0.0f, INFINITY, from_bits(0x7fc12345)}});
    f.tensors.push_back({"scalar", {}, {from_bits(0xffa00001)}}); // negative NaN, signalling payload
    f.tensors.push_back({"empty", {4, 0}, {}});
    f.tensors.push_back({"b", {1}, {1e-45f}}); // denormal
    return f;
}

// Decodes a copy of exactly `len` bytes, so that AddressSanitizer sees any
// read past the end, and returns the Status::format message. Fails the test
// if decoding succeeds or throws anything else.
std::string decode_error(const uint8_t *bytes, size_t len) {
    std::vector<uint8_t> copy(bytes, bytes + len);
    try {
        flow::safetensors_decode(copy.data(), copy.size());
    } catch (const flow::Error &e) {
        cr_assert_eq(e.status(), Status::format, "status %d: %s", int(e.status()), e.what());
        return e.what();
    } catch (const std::exception &e) {
        cr_assert_fail("unexpected exception: %s", e.what());
    }
    cr_assert_fail("decoding succeeded");
    return {};
}

std::vector<uint8_t> with_length(uint64_t header_len, const std::string &rest) {
    std::vector<uint8_t> out(8 + rest.size());
    for (int i = 0; i < 8; i++)
        out[i] = uint8_t(header_len >> (8 * i));
    std::copy(rest.begin(), rest.end(), out.begin() + 8);
    return out;
}

// A file with this header text followed by data_len zero bytes.
std::vector<uint8_t> file_with(const std::string &header, size_t data_len) {
    return with_length(header.size(), header + std::string(data_len, '\0'));
}

void expect_format(const std::string &header, size_t data_len, const char *needle) {
    const std::vector<uint8_t> b = file_with(header, data_len);
    const std::string msg = decode_error(b.data(), b.size());
    cr_expect(msg.find(needle) != std::string::npos, "header %.200s: message '%s' lacks '%s'",
              header.c_str(), msg.c_str(), needle);
}

std::string make_temp_dir() {
    char tmpl[] = "/tmp/test_safetensors.XXXXXX";
    cr_assert_not_null(mkdtemp(tmpl));
    return tmpl;
}

std::vector<std::string> list_dir(const std::string &dir) {
    std::vector<std::string> names;
    DIR *d = opendir(dir.c_str());
    cr_assert_not_null(d);
    while (const dirent *e = readdir(d))
        if (std::strcmp(e->d_name, ".") && std::strcmp(e->d_name, ".."))
            names.push_back(e->d_name);
    closedir(d);
    return names;
}

void remove_tree(const std::string &dir) {
    const std::string cmd = "rm -rf '" + dir + "'";
    cr_assert_eq(std::system(cmd.c_str()), 0);
}

Status status_of(void (*f)(const std::string &), const std::string &arg, std::string *msg) {
    try {
        f(arg);
    } catch (const flow::Error &e) {
        *msg = e.what();
        return e.status();
    }
    cr_assert_fail("no error");
    return Status::internal;
}

} // namespace

Test(safetensors, round_trip_is_bit_exact) {
    const SafetensorsFile in = sample();
    const std::vector<uint8_t> bytes = flow::safetensors_encode(in);
    const SafetensorsFile out = flow::safetensors_decode(bytes.data(), bytes.size());
    cr_assert(out.metadata == in.metadata);
    cr_assert_eq(out.tensors.size(), in.tensors.size());
    // Encoding lays tensors out in order and decoding sorts by offset, so the
    // order survives: "empty" sorts before "b", which starts where it ends.
    for (size_t i = 0; i < in.tensors.size(); i++) {
        const SafetensorsEntry &a = in.tensors[i], &b = out.tensors[i];
        cr_assert_eq(a.name, b.name);
        cr_assert(a.shape == b.shape, "shape of %s", a.name.c_str());
        cr_assert_eq(a.data.size(), b.data.size());
        for (size_t j = 0; j < a.data.size(); j++)
            cr_assert_eq(bits(a.data[j]), bits(b.data[j]), "%s[%zu]", a.name.c_str(), j);
    }
}

Test(safetensors, empty_file_round_trips) {
    const std::vector<uint8_t> bytes = flow::safetensors_encode({});
    const SafetensorsFile out = flow::safetensors_decode(bytes.data(), bytes.size());
    cr_assert(out.metadata.empty());
    cr_assert(out.tensors.empty());
}

Test(safetensors, exact_byte_layout) {
    SafetensorsFile f;
    f.metadata = {{"k", "v"}};
    f.tensors.push_back({"a", {2}, {1.0f, -0.0f}});
    f.tensors.push_back({"s", {}, {from_bits(0x7fc00001)}});
    const std::string json = "{\"__metadata__\":{\"k\":\"v\"},"
                             "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                             "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[8,12]}}";
    std::string padded = json;
    padded.append((8 - json.size() % 8) % 8, ' ');
    std::vector<uint8_t> expected = with_length(padded.size(), padded);
    const uint8_t data[] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x80, 0x01, 0x00, 0xc0, 0x7f};
    expected.insert(expected.end(), data, data + sizeof data);

    const std::vector<uint8_t> bytes = flow::safetensors_encode(f);
    cr_assert_eq(padded.size() % 8, 0);
    cr_assert(bytes == expected, "encoded:\n%.*s", int(bytes.size()), (const char *)bytes.data());
    cr_assert_eq(flow::safetensors_decode(expected.data(), expected.size()).tensors.size(), 2);
}

// The reference reader, when the machine has it (pip install safetensors numpy).
Test(safetensors, python_reference_reader_accepts) {
    if (std::system("python3 -c 'import safetensors.numpy' >/dev/null 2>&1") != 0)
        cr_skip_test("python3 with safetensors and numpy is not available");
    const std::string dir = make_temp_dir();
    const std::vector<uint8_t> bytes = flow::safetensors_encode(sample());
    flow::write_file_atomic(dir + "/m.safetensors", bytes.data(), bytes.size());
    const std::string cmd =
        "python3 -c '\n"
        "import sys, numpy as np\n"
        "from safetensors import safe_open\n"
        "from safetensors.numpy import load_file\n"
        "t = load_file(sys.argv[1])\n"
        "assert sorted(t) == [\"b\", \"empty\", \"scalar\", \"w\"], sorted(t)\n"
        "assert t[\"w\"].dtype == np.float32 and t[\"w\"].shape == (2, 3)\n"
        "assert t[\"w\"].view(np.uint32)[1, 2] == 0x7fc12345\n"
        "assert t[\"scalar\"].shape == () and t[\"empty\"].shape == (4, 0)\n"
        "with safe_open(sys.argv[1], \"np\") as f:\n"
        "    assert f.metadata()[\"flowlib.format\"] == \"1\"\n"
        "' " + dir + "/m.safetensors";
    const int rc = std::system(cmd.c_str());
    remove_tree(dir);
    cr_assert_eq(rc, 0, "python reader rejected the file");
}

Test(safetensors, every_truncation_fails) {
    const std::vector<uint8_t> bytes = flow::safetensors_encode(sample());
    for (size_t len = 0; len < bytes.size(); len++)
        decode_error(bytes.data(), len);
}

Test(safetensors, random_corruption_never_crashes) {
    const std::vector<uint8_t> good = flow::safetensors_encode(sample());
    const size_t header_end = 8 + good[0]; // the sample's header is < 256 bytes
    std::mt19937 rng(12345);
    int decoded = 0;
    for (int round = 0; round < 2000; round++) {
        std::vector<uint8_t> b = good;
        const int flips = round % 2 ? 1 : 2 + int(rng() % 7);
        for (int k = 0; k < flips; k++) {
            // Mostly hit the header, where the interesting failures are.
            const size_t limit = rng() % 4 ? header_end : b.size();
            b[rng() % limit] = uint8_t(rng());
        }
        try {
            const SafetensorsFile f = flow::safetensors_decode(b.data(), b.size());
            for (const SafetensorsEntry &t : f.tensors) {
                size_t n = 1;
                for (size_t d : t.shape)
                    n *= d;
                cr_assert_eq(n, t.data.size(), "round %d: %s", round, t.name.c_str());
            }
            decoded++;
        } catch (const flow::Error &e) {
            cr_assert_eq(e.status(), Status::format, "round %d: %s", round, e.what());
        } catch (const std::exception &e) {
            cr_assert_fail("round %d: unexpected exception: %s", round, e.what());
        }
    }
    cr_expect_gt(decoded, 0); // flips that only change values or padding decode
}

Test(safetensors, bad_header_length) {
    std::vector<uint8_t> b = with_length(~uint64_t(0), "{}");
    cr_expect(decode_error(b.data(), b.size()).find("exceeds the limit") != std::string::npos);
    b = with_length((uint64_t(100) << 20) + 1, "{}");
    cr_expect(decode_error(b.data(), b.size()).find("exceeds the limit") != std::string::npos);
    b = with_length(3, "{}");
    cr_expect(decode_error(b.data(), b.size()).find("past the end") != std::string::npos);
    const uint8_t short_file[] = {0, 0, 0};
    cr_expect(decode_error(short_file, sizeof short_file).find("too short") != std::string::npos);
    decode_error(nullptr, 0);
}

Test(safetensors, header_must_be_a_json_object) {
    for (const char *h : {"", "[]", "\"x\"", "1", "null", " {}", "\xef\xbb\xbf{}"})
        expect_format(h, 0, "not a JSON object");
    for (const char *h : {"{", "{}x", "{} {}", "{\"a\":}", "{\"a\" 1}", "{'a':1}"})
        expect_format(h, 0, "not valid JSON");
    expect_format(std::string("{\"a\":1}\0", 8), 0, "not valid JSON");
}

Test(safetensors, deep_nesting) {
    expect_format(std::string(100000, '['), 0, "not a JSON object");
    expect_format("{\"a\":" + std::string(100000, '['), 0, "nests deeper");
    std::string objects;
    for (int i = 0; i < 100000; i++)
        objects += "{\"a\":";
    expect_format(objects, 0, "nests deeper");
}

Test(safetensors, invalid_utf8) {
    expect_format("{\"\xff\":{}}", 0, "not valid JSON");
    expect_format("{\"\xc0\xaf\":{}}", 0, "not valid JSON");    // overlong '/'
    expect_format("{\"\xed\xa0\x80\":{}}", 0, "not valid JSON"); // encoded surrogate
    expect_format("{\"\\ud800\":{}}", 0, "not valid JSON");      // lone surrogate escape
    expect_format("{\"__metadata__\":{\"k\":\"\xfe\"}}", 0, "not valid JSON");
}

Test(safetensors, duplicate_keys) {
    const std::string t = "{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}";
    expect_format("{\"a\":" + t + ",\"a\":" + t + "}", 4, "duplicate key 'a'");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                  4, "duplicate key 'dtype'");
    expect_format("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key 'k'");
    expect_format("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__'");
}

Test(safetensors, bad_metadata) {
    expect_format("{\"__metadata__\":[]}", 0, "__metadata__ is not an object");
    expect_format("{\"__metadata__\":null}", 0, "__metadata__ is not an object");
    expect_format("{\"__metadata__\":{\"k\":1}}", 0, "value of 'k' is not a string");
    expect_format("{\"__metadata__\":{\"k\":{}}}", 0, "value of 'k' is not a string");
}

Test(safetensors, bad_entry_fields) {
    expect_format("{\"a\":[]}", 0, "tensor 'a' is not an object");
    expect_format("{\"\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}", 4, "empty name");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a' has no data_offsets");
    expect_format("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a' has no dtype");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":0}}", 4,
                  "unknown field 'x'");
    expect_format("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
                  "unsupported dtype 'F16' for tensor 'a'");
    expect_format("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "unsupported dtype 'f32'");
    expect_format("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                  "dtype that is not a string");
}

Test(safetensors, bad_shapes) {
    const char *dims[] = {"-1", "1.5", "2.0", "1e30", "-0", "99999999999999999999999", "\"2\"", "null", "[2]"};
    for (const char *d : dims)
        expect_format(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[") + d +
                          "],\"data_offsets\":[0,8]}}",
                      8, "not a non-negative integer");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8,
                  "shape that is not an array");
    // Overflows of the element count, of count * 4, and one hidden by a 0 dim.
    for (const char *s : {"[4294967296,4294967296]", "[18446744073709551615]",
                          "[4611686018427387904]", "[0,4294967296,4294967296]"})
        expect_format(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":") + s +
                          ",\"data_offsets\":[0,0]}}",
                      0, "overflows");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                  "needs 12 bytes but data_offsets span 8");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0,
                  "needs 4 bytes but data_offsets span 0");
}

Test(safetensors, bad_offsets) {
    const char *bad[] = {"[0]", "[0,4,8]", "[-4,0]", "[0,4.0]", "{}", "[\"0\",4]",
                         "[0,18446744073709551616]"};
    for (const char *o : bad)
        expect_format(std::string("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":") + o +
                          "}}",
                      4, "not two non-negative integers");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 4,
                  "outside the 4-byte data section");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
                  "outside the 8-byte data section");
    expect_format("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                  "\"data_offsets\":[18446744073709551612,18446744073709551615]}}",
                  4, "outside");
}

Test(safetensors, layout_must_tile_the_data_section) {
    const std::string a = "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
    expect_format("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                  "tensor 'b' overlaps tensor 'a'");
    expect_format("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
                  "overlaps");
    expect_format("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 8,
                  "tensor 'b' overlaps tensor 'a'");
    expect_format("{" + a + ",\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[12,16]}}", 16,
                  "bytes [8, 12) of the data section belong to no tensor");
    expect_format("{\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                  "bytes [0, 4) of the data section belong to no tensor");
    expect_format("{" + a + "}", 9, "bytes [8, 9) of the data section belong to no tensor");
    expect_format("{}", 1, "bytes [0, 1)");

    // Empty tensors may sit anywhere on a tensor boundary, several at once.
    const std::string h = "{" + a +
                          ",\"e1\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}"
                          ",\"e0\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]}"
                          ",\"e2\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}}";
    const std::vector<uint8_t> b = file_with(h, 8);
    const SafetensorsFile f = flow::safetensors_decode(b.data(), b.size());
    const char *order[] = {"e0", "e2", "a", "e1"};
    cr_assert_eq(f.tensors.size(), 4);
    for (size_t i = 0; i < 4; i++)
        cr_expect_eq(f.tensors[i].name, order[i]);
}

Test(safetensors, long_names_are_cut_in_messages) {
    const std::string name = std::string(200, 'x') + "\xc3\xa9";
    const std::string msg = [&] {
        const std::vector<uint8_t> b = file_with("{\"" + name + "\":[]}", 0);
        return decode_error(b.data(), b.size());
    }();
    cr_expect_lt(msg.size(), 150u, "%s", msg.c_str());
}

Test(safetensors, encode_rejects_bad_input) {
    const auto status = [](const SafetensorsFile &f) {
        try {
            flow::safetensors_encode(f);
        } catch (const flow::Error &e) {
            return e.status();
        }
        return Status::internal;
    };
    SafetensorsFile f;
    f.tensors = {{"a", {2}, {1}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors = {{"a", {1}, {1}}, {"a", {1}, {1}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors = {{"", {1}, {1}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors = {{"__metadata__", {1}, {1}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors = {{"a", {size_t(1) << 62, 8}, {}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors = {{"\xff", {1}, {1}}};
    cr_expect_eq(status(f), Status::invalid_argument);
    f.tensors.clear();
    f.metadata = {{"k", "\xc3"}};
    cr_expect_eq(status(f), Status::invalid_argument);
}

Test(atomic_file, writes_and_replaces) {
    const std::string dir = make_temp_dir();
    const std::string path = dir + "/f.bin";
    flow::write_file_atomic(path, "first version", 13);
    std::vector<uint8_t> got = flow::read_file(path, 100);
    cr_assert_eq(std::string(got.begin(), got.end()), "first version");
    flow::write_file_atomic(path, "2nd", 3);
    got = flow::read_file(path, 3); // exactly at the limit
    cr_assert_eq(std::string(got.begin(), got.end()), "2nd");
    flow::write_file_atomic(path, nullptr, 0);
    cr_assert(flow::read_file(path, 0).empty());
    cr_assert_eq(list_dir(dir).size(), 1, "temporary files left behind");
    remove_tree(dir);
}

Test(atomic_file, large_round_trip) {
    const std::string dir = make_temp_dir();
    std::vector<uint8_t> data(3 << 20);
    std::mt19937 rng(7);
    for (uint8_t &x : data)
        x = uint8_t(rng());
    flow::write_file_atomic(dir + "/big", data.data(), data.size());
    cr_assert(flow::read_file(dir + "/big", data.size()) == data);
    remove_tree(dir);
}

Test(atomic_file, failures_leave_no_files) {
    const std::string dir = make_temp_dir();
    std::string msg;
    const auto write = [](const std::string &p) { flow::write_file_atomic(p, "x", 1); };

    cr_assert_eq(status_of(write, dir + "/missing/f.bin", &msg), Status::io);
    cr_expect(msg.find("cannot write '" + dir + "/missing/f.bin': ") == 0, "%s", msg.c_str());

    // The temporary file is created and written, then the rename over a
    // directory fails: it must be removed again.
    cr_assert_eq(mkdir((dir + "/sub").c_str(), 0700), 0);
    cr_assert_eq(status_of(write, dir + "/sub", &msg), Status::io);
    cr_expect(msg.find("cannot write '" + dir + "/sub': ") == 0, "%s", msg.c_str());
    const std::vector<std::string> left = list_dir(dir);
    cr_assert_eq(left.size(), 1, "left behind: %s", left.back().c_str());
    remove_tree(dir);
}

Test(atomic_file, read_errors) {
    const std::string dir = make_temp_dir();
    std::string msg;
    const auto read = [](const std::string &p) { flow::read_file(p, 4); };

    cr_assert_eq(status_of(read, dir + "/none", &msg), Status::io);
    cr_expect(msg.find("cannot read '" + dir + "/none': No such file") == 0, "%s", msg.c_str());
    cr_assert_eq(status_of(read, dir, &msg), Status::io); // a directory
    flow::write_file_atomic(dir + "/five", "12345", 5);
    cr_assert_eq(status_of(read, dir + "/five", &msg), Status::format);
    cr_expect(msg.find("larger than 4 bytes") != std::string::npos, "%s", msg.c_str());
    // A device has no size up front: the limit is found while reading.
    cr_assert_eq(status_of(read, "/dev/zero", &msg), Status::format);
    remove_tree(dir);
}
