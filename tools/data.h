// Data sets for the program: a file (.npy, .csv/.tsv, idx or idx.gz, chosen
// by extension, then by content) or a built-in 2-D set, split into the
// model's data columns and its context columns.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "table.h"

namespace cli {

struct DataOptions {
    std::string header = "auto"; // CSV: "auto", "yes" or "no"
    std::string columns;         // data columns ("0,1", "2-5", "x,y"); "" = all but context
    std::string context;         // context columns, "" = none
    size_t builtin_rows = 10000; // rows of a built-in set
    uint64_t builtin_seed = 0;
    size_t limit = 0;            // keep only the first `limit` rows (0 = all)
};

struct Dataset {
    std::string source;             // the path or built-in name
    std::string format;             // "npy", "csv", "idx", "builtin"
    Table x;                        // the data columns
    Table context;                  // the context columns (cols == 0: none)
    std::vector<size_t> data_cols;  // indices into the file's columns
    std::vector<size_t> context_cols;
};

Dataset load_dataset(const std::string &source, const DataOptions &opt);

// The whole file as one table, in the format its name (or content) says.
Table read_table(const std::string &path, const std::string &header);
// .npy or .csv, by extension.
void write_table(const std::string &path, const Table &t);
bool is_table_path(const std::string &path);

const std::vector<std::string> &builtin_names();
bool is_builtin(const std::string &name);
// The names as one line, "two_moons, eight_gaussians, ...".
std::string builtin_list();

} // namespace cli
