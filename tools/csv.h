// CSV files of numbers: comma separated (tab for .tsv), one row per line,
// an optional header line of column names.
#pragma once

#include <string>

#include "table.h"

namespace cli {

enum class CsvHeader { detect, yes, no };

// With CsvHeader::detect, the first line is a header when any of its fields
// is not a number. Every row must have as many fields as the first.
Table read_csv(const std::string &path, CsvHeader header);
// Writes t.names as the header when there are names, "%.9g" numbers.
void write_csv(const std::string &path, const Table &t);

} // namespace cli
