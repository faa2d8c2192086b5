// How the staircase products (Backend::staircase_*) cut a MADE layer's
// weight w [units, inputs], row u zero from column prefix[u] on, into dense
// GEMMs that skip most of the zeros. Both backends plan with these; only the
// panel widths differ (the CPU kernel's tile, fewer and larger cuBLAS calls).
//   y = x w^T and dw = dy^T x: panels of rows of w, each as deep as its
//     deepest row;
//   dx = dy w: panels of columns of w, each summing over the rows from the
//     first to the last that reach the panel (the CPU sums over only the
//     runs of rows that reach it, cpu_staircase.cpp: a MADE output layer's
//     units are not in degree order, so there is one run per block).
// Inside a panel the shallower rows multiply zeros of w, and their dw past
// their prefix is not a gradient (w's zeros are not parameters). Runs of
// monotone prefixes (a MADE layer's units in degree order) leave few such
// zeros.
#pragma once

#include <algorithm>
#include <cstddef>

namespace flow {

// Rows [begin, end) of w, which together use its columns [0, depth).
struct RowPanel {
    size_t begin, end, depth;
};

inline size_t panel_count(size_t length, size_t width) { return (length + width - 1) / width; }

// Panel i of the rows of w cut every `width` rows (the last may be narrower).
inline RowPanel row_panel(const size_t *prefix, size_t units, size_t width, size_t i) {
    const size_t begin = i * width, end = std::min(units, begin + width);
    return {begin, end, *std::max_element(prefix + begin, prefix + end)};
}

// Rows [begin, end) of w hold every row that reaches column `column`
// (begin == end when none does).
struct RowRange {
    size_t begin, end;
};

inline RowRange rows_reaching(const size_t *prefix, size_t units, size_t column) {
    size_t begin = 0, end = units;
    while (begin < end && prefix[begin] <= column) ++begin;
    while (end > begin && prefix[end - 1] <= column) --end;
    return {begin, end};
}

// Columns from here on are reached by no row of w.
inline size_t staircase_reach(const size_t *prefix, size_t units) {
    return units ? *std::max_element(prefix, prefix + units) : 0;
}

} // namespace flow
