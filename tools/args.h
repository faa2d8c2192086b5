// Command-line options: each subcommand declares its options (name, value
// name, help) once; the same table parses argv and prints --help.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace cli {

struct OptionSpec {
    const char *name;  // "epochs" for --epochs
    char short_name;   // 'o' for -o, or 0
    const char *value; // "N" when the option takes a value, nullptr for a flag
    const char *help;
};

struct CommandSpec {
    const char *name;     // "train"
    const char *usage;    // "[options] DATA -o MODEL"
    const char *summary;  // one paragraph
    std::vector<OptionSpec> options;
    const char *epilog;   // examples, or nullptr
};

class Args {
public:
    // Parses argv[first..]; throws Error for an unknown option or a missing
    // value. --help is recorded, not acted on: see help_requested().
    Args(const CommandSpec &spec, int argc, char **argv, int first);

    bool help_requested() const { return help_; }
    void print_help() const;

    bool has(const std::string &name) const { return values_.count(name) != 0; }
    bool flag(const std::string &name) const { return has(name); }
    std::string str(const std::string &name, const std::string &def = "") const;
    long long integer(const std::string &name, long long def, long long lo, long long hi) const;
    double number(const std::string &name, double def) const;
    double number(const std::string &name, double def, double lo, double hi) const;

    const std::vector<std::string> &positional() const { return positional_; }
    // Exactly `min`..`max` positional arguments, or an error naming them.
    void expect_positional(size_t min, size_t max, const char *names) const;

    // Every option given, as strings (flags map to ""): saved in checkpoints.
    const std::map<std::string, std::string> &values() const { return values_; }
    // Sets an option if it was not given (used when resuming).
    void set_default(const std::string &name, const std::string &value);

    const CommandSpec &spec() const { return spec_; }

private:
    const OptionSpec *find(const std::string &name) const;
    const CommandSpec &spec_;
    std::map<std::string, std::string> values_;
    std::vector<std::string> positional_;
    bool help_ = false;
};

} // namespace cli
