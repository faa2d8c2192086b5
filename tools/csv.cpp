#include "csv.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "common.h"

namespace cli {

namespace {

// Splits one line into fields; double quotes may enclose a field (and "" is
// a quote inside one). Returns false for an unterminated quote.
bool split_line(const std::string &line, char sep, std::vector<std::string> &fields) {
    fields.clear();
    std::string field;
    bool quoted = false;
    for (size_t i = 0; i < line.size(); ++i) {
        char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
                field += '"';
                ++i;
            } else if (c == '"') {
                quoted = false;
            } else {
                field += c;
            }
        } else if (c == '"') {
            quoted = true;
        } else if (c == sep) {
            fields.push_back(field);
            field.clear();
        } else {
            field += c;
        }
    }
    fields.push_back(field);
    return !quoted;
}

std::string trim(const std::string &s) {
    size_t b = s.find_first_not_of(" \t"), e = s.find_last_not_of(" \t");
    return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool to_number(const std::string &text, double &v) {
    std::string s = trim(text);
    if (s.empty()) return false;
    errno = 0;
    char *end = nullptr;
    v = std::strtod(s.c_str(), &end);
    return *end == '\0' && errno != ERANGE;
}

} // namespace

Table read_csv(const std::string &path, CsvHeader header) {
    std::string data = read_file(path);
    char sep = extension(path) == ".tsv" ? '\t' : ',';
    if (data.find('\0') != std::string::npos) fail(path + ": not a text file (it holds NUL bytes)");

    Table t;
    std::vector<std::string> fields;
    size_t line_no = 0, pos = 0;
    bool first = true;
    bool all_integer = true;
    while (pos < data.size()) {
        size_t end = data.find('\n', pos);
        if (end == std::string::npos) end = data.size();
        std::string line = data.substr(pos, end - pos);
        pos = end + 1;
        ++line_no;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (trim(line).empty()) continue;
        if (line_no == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3); // BOM
        if (!split_line(line, sep, fields))
            fail(path + format(":%zu: unterminated quoted field", line_no));
        if (first) {
            first = false;
            bool is_header = header == CsvHeader::yes;
            if (header == CsvHeader::detect) {
                double v;
                for (const std::string &f : fields)
                    if (!to_number(f, v)) is_header = true;
            }
            t.cols = fields.size();
            if (is_header) {
                for (const std::string &f : fields) t.names.push_back(trim(f));
                continue;
            }
        }
        if (fields.size() != t.cols)
            fail(path + format(":%zu: %zu fields, expected %zu (as on the first line)", line_no,
                               fields.size(), t.cols));
        for (size_t c = 0; c < fields.size(); ++c) {
            double v;
            if (!to_number(fields[c], v))
                fail(path + format(":%zu: field %zu (\"%s\") is not a number", line_no, c + 1,
                                   trim(fields[c]).substr(0, 40).c_str()));
            if (!std::isfinite(v))
                fail(path + format(":%zu: field %zu is not a finite number", line_no, c + 1));
            if (v != std::floor(v)) all_integer = false;
            t.values.push_back((float)v);
        }
        ++t.rows;
    }
    if (t.rows == 0) fail(path + ": no data rows");
    t.shape = {t.cols};
    t.integer = all_integer;
    return t;
}

void write_csv(const std::string &path, const Table &t) {
    std::string out;
    if (!t.names.empty()) {
        for (size_t c = 0; c < t.names.size(); ++c) {
            if (c) out += ',';
            out += t.names[c];
        }
        out += '\n';
    }
    char buf[32];
    for (size_t r = 0; r < t.rows; ++r) {
        for (size_t c = 0; c < t.cols; ++c) {
            if (c) out += ',';
            std::snprintf(buf, sizeof buf, "%.9g", (double)t.values[r * t.cols + c]);
            out += buf;
        }
        out += '\n';
    }
    write_file_atomic(path, out.data(), out.size());
}

} // namespace cli
