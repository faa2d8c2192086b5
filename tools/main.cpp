// flowlib: train, evaluate, sample and inspect normalizing flows from the
// command line. Every failure is one line on stderr and exit status 1.
#include <flowlib.h>

#include <cstdio>
#include <cstring>
#include <new>

#include "commands.h"
#include "common.h"

namespace cli {

void apply_threads(long long threads) {
    check(flow_set_num_threads((int)threads), "--threads");
}

} // namespace cli

namespace {

struct Command {
    const char *name;
    int (*run)(int, char **);
    const char *summary;
};

const Command commands[] = {
    {"train", cli::cmd_train, "train a flow on a data file or a built-in data set"},
    {"eval", cli::cmd_eval, "log-likelihood (nats, bits/dim) of a data file"},
    {"sample", cli::cmd_sample, "draw samples to .npy, .csv or a PNG"},
    {"info", cli::cmd_info, "spec, parameters, data shape and format of a model file"},
    {"data", cli::cmd_data, "write a built-in 2-D data set to a file"},
    {"plot", cli::cmd_plot, "draw a model: density heat map, or a grid of samples"},
};

void usage(FILE *out) {
    std::fprintf(out,
                 "usage: flowlib COMMAND [options] ...\n"
                 "\n"
                 "Normalizing flows from the command line (flowlib %s).\n"
                 "\n"
                 "commands:\n",
                 flow_version_string());
    for (const Command &c : commands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
    std::fprintf(out,
                 "\n"
                 "flowlib COMMAND --help describes each one. Data files: .npy (float, int or\n"
                 "uint8, C order), .csv/.tsv (header optional) and MNIST-style idx files,\n"
                 "plain or .gz. Models are safetensors files; flowlib train also writes\n"
                 "MODEL.json beside each, with the data's shape and the training record.\n");
}

} // namespace

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (!std::strcmp(name, "--help") || !std::strcmp(name, "-h") || !std::strcmp(name, "help")) {
        if (argc > 2 && std::strcmp(name, "help") == 0) {
            for (const Command &c : commands)
                if (!std::strcmp(c.name, argv[2])) {
                    char help[] = "--help";
                    char *args[] = {argv[0], (char *)c.name, help, nullptr};
                    return c.run(3, args);
                }
        }
        usage(stdout);
        return 0;
    }
    if (!std::strcmp(name, "--version")) {
        std::printf("flowlib %s\n", flow_version_string());
        return 0;
    }
    for (const Command &c : commands) {
        if (std::strcmp(c.name, name) != 0) continue;
        try {
            return c.run(argc, argv);
        } catch (const cli::Error &e) {
            std::fflush(stdout);
            std::fprintf(stderr, "flowlib %s: %s\n", name, e.what());
        } catch (const std::bad_alloc &) {
            std::fprintf(stderr, "flowlib %s: out of memory\n", name);
        } catch (const std::exception &e) {
            std::fprintf(stderr, "flowlib %s: %s\n", name, e.what());
        }
        return 1;
    }
    std::fprintf(stderr, "flowlib: unknown command \"%s\" (see: flowlib --help)\n", name);
    return 2;
}
