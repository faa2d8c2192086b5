// flowlib data: writes a built-in data set to a file.
#include <cstdio>

#include "args.h"
#include "commands.h"
#include "common.h"
#include "data.h"
#include "plot.h"

namespace cli {

namespace {

const CommandSpec spec = {
    "data",
    "[options] NAME -o FILE\n       flowlib data --list",
    "Writes N rows of a built-in 2-D data set to FILE (.npy, .csv or .png, a\n"
    "histogram). The same seed gives the same rows; the first k rows do not\n"
    "depend on N. Data sets: two_moons, eight_gaussians, checkerboard, pinwheel,\n"
    "two_spirals, rings.",
    {
        {"output", 'o', "FILE", "where to write (.npy, .csv or .png)"},
        {"count", 'n', "N", "number of rows (default 10000)"},
        {"seed", 0, "S", "seed (default 0)"},
        {"list", 0, nullptr, "list the data sets"},
    },
    "example:\n"
    "  flowlib data checkerboard -n 5000 -o checkerboard.csv\n"};

} // namespace

int cmd_data(int argc, char **argv) {
    Args a(spec, argc, argv, 2);
    if (a.help_requested()) {
        a.print_help();
        return 0;
    }
    if (a.flag("list")) {
        for (const std::string &n : builtin_names()) std::printf("%s\n", n.c_str());
        return 0;
    }
    a.expect_positional(1, 1, "NAME");
    const std::string &name = a.positional()[0];
    if (!is_builtin(name)) fail("unknown data set \"" + name + "\" (known: " + builtin_list() + ")");
    std::string out = a.str("output");
    if (out.empty()) fail("missing -o FILE: where to write the data (.npy, .csv or .png)");
    Table t;
    t.rows = (size_t)a.integer("count", 10000, 1, 100000000);
    t.cols = 2;
    t.names = {"x", "y"};
    t.values.resize(2 * t.rows);
    check(flow_toy_data(name.c_str(), t.rows, (uint64_t)a.integer("seed", 0, 0, INT64_MAX), t.values.data()),
          "data set " + name);
    if (extension(out) == ".png") {
        write_png(out, histogram_panel(t, view_of(t), 320));
    } else {
        if (!is_table_path(out)) fail(out + ": unknown output type (use .npy, .csv or .png)");
        write_table(out, t);
    }
    std::printf("wrote %s: %zu rows of %s\n", out.c_str(), t.rows, name.c_str());
    return 0;
}

} // namespace cli
