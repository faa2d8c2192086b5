#include "data.h"

#include <flowlib.h>

#include <algorithm>

#include "common.h"
#include "csv.h"
#include "idx.h"
#include "npy.h"

namespace cli {

const std::vector<std::string> &builtin_names() {
    static const std::vector<std::string> names = {"two_moons",   "eight_gaussians", "checkerboard",
                                                   "pinwheel",    "two_spirals",     "rings"};
    return names;
}

bool is_builtin(const std::string &name) {
    const auto &n = builtin_names();
    return std::find(n.begin(), n.end(), name) != n.end();
}

std::string builtin_list() {
    std::string s;
    for (const std::string &n : builtin_names()) s += (s.empty() ? "" : ", ") + n;
    return s;
}

bool is_table_path(const std::string &path) {
    std::string ext = extension(path);
    return ext == ".npy" || ext == ".csv" || ext == ".tsv";
}

static std::string file_format(const std::string &path) {
    std::string ext = extension(path);
    if (ext == ".npy") return "npy";
    if (ext == ".csv" || ext == ".tsv" || ext == ".txt") return "csv";
    if (ext == ".idx" || path.find("idx") != std::string::npos || looks_like_idx(path)) return "idx";
    fail(path + ": unknown file type (expected .npy, .csv, .tsv or an idx file)");
}

Table read_table(const std::string &path, const std::string &header) {
    if (!file_exists(path)) fail(path + ": no such file");
    std::string fmt = file_format(path);
    if (fmt == "npy") return read_npy(path);
    if (fmt == "idx") return read_idx(path);
    CsvHeader h = header == "yes" ? CsvHeader::yes : header == "no" ? CsvHeader::no : CsvHeader::detect;
    return read_csv(path, h);
}

void write_table(const std::string &path, const Table &t) {
    std::string ext = extension(path);
    if (ext == ".npy") return write_npy(path, t);
    if (ext == ".csv" || ext == ".tsv") return write_csv(path, t);
    fail(path + ": unknown output type (use .npy or .csv)");
}

// "0,2,4-6" or column names from the header.
static std::vector<size_t> select_columns(const std::string &spec, const Table &t,
                                          const std::string &source, const char *option) {
    std::vector<size_t> cols;
    size_t start = 0;
    for (;;) {
        size_t comma = spec.find(',', start);
        std::string part = spec.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto named = std::find(t.names.begin(), t.names.end(), part);
        if (named != t.names.end()) {
            cols.push_back((size_t)(named - t.names.begin()));
        } else {
            size_t dash = part.find('-', 1);
            std::string what = format("--%s", option);
            long long lo, hi;
            if (!part.empty() && std::isdigit((unsigned char)part[0]) && dash != std::string::npos) {
                lo = parse_int(part.substr(0, dash), what, 0, (long long)t.cols - 1);
                hi = parse_int(part.substr(dash + 1), what, lo, (long long)t.cols - 1);
            } else if (!part.empty() && std::isdigit((unsigned char)part[0])) {
                lo = hi = parse_int(part, what, 0, (long long)t.cols - 1);
            } else {
                fail(format("--%s: %s has no column \"%s\"%s", option, source.c_str(), part.c_str(),
                            t.names.empty() ? " (it has no header; give column numbers from 0)" : ""));
            }
            for (long long c = lo; c <= hi; ++c) cols.push_back((size_t)c);
        }
        if (comma == std::string::npos) break;
        start = comma + 1;
    }
    return cols;
}

static Table take_columns(const Table &t, const std::vector<size_t> &cols) {
    Table out;
    out.rows = t.rows;
    out.cols = cols.size();
    out.integer = t.integer;
    out.levels = t.levels;
    out.values.resize(out.rows * out.cols);
    for (size_t r = 0; r < t.rows; ++r)
        for (size_t c = 0; c < cols.size(); ++c) out.values[r * out.cols + c] = t.values[r * t.cols + cols[c]];
    if (!t.names.empty())
        for (size_t c : cols) out.names.push_back(t.names[c]);
    // A row keeps its shape (an image) only when every column is kept in order.
    bool all = cols.size() == t.cols;
    for (size_t c = 0; all && c < cols.size(); ++c) all = cols[c] == c;
    out.shape = all ? t.shape : std::vector<size_t>{out.cols};
    return out;
}

Dataset load_dataset(const std::string &source, const DataOptions &opt) {
    Dataset d;
    d.source = source;
    Table all;
    if (!file_exists(source) && is_builtin(source)) {
        d.format = "builtin";
        all.rows = opt.builtin_rows;
        all.cols = 2;
        all.shape = {2};
        all.values.resize(all.rows * 2);
        check(flow_toy_data(source.c_str(), all.rows, opt.builtin_seed, all.values.data()),
              "built-in data set " + source);
    } else {
        if (!file_exists(source) && source.find('/') == std::string::npos &&
            source.find('.') == std::string::npos)
            fail(source + ": no such file, nor a built-in data set (" + builtin_list() + ")");
        d.format = file_format(source);
        all = read_table(source, opt.header);
    }
    if (opt.limit && opt.limit < all.rows) {
        all.rows = opt.limit;
        all.values.resize(all.rows * all.cols);
    }

    if (!opt.context.empty()) d.context_cols = select_columns(opt.context, all, source, "context");
    if (!opt.columns.empty()) {
        d.data_cols = select_columns(opt.columns, all, source, "columns");
    } else {
        for (size_t c = 0; c < all.cols; ++c)
            if (std::find(d.context_cols.begin(), d.context_cols.end(), c) == d.context_cols.end())
                d.data_cols.push_back(c);
    }
    if (d.data_cols.empty()) fail(source + ": no data columns left once the context columns are taken");
    if (d.context_cols.empty() && d.data_cols.size() == all.cols) {
        d.x = std::move(all);
    } else {
        d.x = take_columns(all, d.data_cols);
        d.context = take_columns(all, d.context_cols);
    }
    return d;
}

} // namespace cli
