// The subcommands of the flowlib program. Each takes the whole argv (the
// subcommand is argv[1]) and returns the exit status; failures throw Error.
#pragma once

namespace cli {

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_plot(int argc, char **argv);

// Options shared by the commands that run a model.
void apply_threads(long long threads);

} // namespace cli
