#include "args.h"

#include <cstdio>
#include <cstring>

#include "common.h"

namespace cli {

Args::Args(const CommandSpec &spec, int argc, char **argv, int first) : spec_(spec) {
    bool options_done = false;
    for (int i = first; i < argc; ++i) {
        std::string a = argv[i];
        if (options_done || a.size() < 2 || a[0] != '-' || (a[1] != '-' && std::isdigit((unsigned char)a[1]))) {
            positional_.push_back(a);
            continue;
        }
        if (a == "--") {
            options_done = true;
            continue;
        }
        if (a == "--help" || a == "-h") {
            help_ = true;
            continue;
        }
        std::string name, value;
        bool inline_value = false;
        const OptionSpec *o = nullptr;
        if (a[1] == '-') {
            size_t eq = a.find('=');
            name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
            if (eq != std::string::npos) {
                value = a.substr(eq + 1);
                inline_value = true;
            }
            o = find(name);
        } else {
            if (a.size() != 2) fail("unknown option " + a + format(" (see: flowlib %s --help)", spec_.name));
            for (const OptionSpec &s : spec_.options)
                if (s.short_name == a[1]) o = &s;
        }
        if (!o) fail("unknown option " + a + format(" (see: flowlib %s --help)", spec_.name));
        name = o->name;
        if (o->value) {
            if (!inline_value) {
                if (i + 1 >= argc) fail(a + " needs a value (" + o->value + ")");
                value = argv[++i];
            }
        } else if (inline_value) {
            fail("--" + name + " takes no value");
        }
        values_[name] = value;
    }
}

const OptionSpec *Args::find(const std::string &name) const {
    for (const OptionSpec &s : spec_.options)
        if (name == s.name) return &s;
    return nullptr;
}

void Args::print_help() const {
    std::printf("usage: flowlib %s %s\n\n%s\n", spec_.name, spec_.usage, spec_.summary);
    if (!spec_.options.empty()) std::printf("\noptions:\n");
    for (const OptionSpec &o : spec_.options) {
        std::string left = o.short_name ? format("  -%c, --%s", o.short_name, o.name)
                                        : format("      --%s", o.name);
        if (o.value) left += std::string(" ") + o.value;
        if (left.size() < 28) {
            std::printf("%-28s%s\n", left.c_str(), o.help);
        } else {
            std::printf("%s\n%-28s%s\n", left.c_str(), "", o.help);
        }
    }
    std::printf("  -h, --help                show this help\n");
    if (spec_.epilog) std::printf("\n%s", spec_.epilog);
}

std::string Args::str(const std::string &name, const std::string &def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : it->second;
}

long long Args::integer(const std::string &name, long long def, long long lo, long long hi) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : parse_int(it->second, "--" + name, lo, hi);
}

double Args::number(const std::string &name, double def) const {
    auto it = values_.find(name);
    return it == values_.end() ? def : parse_number(it->second, "--" + name);
}

double Args::number(const std::string &name, double def, double lo, double hi) const {
    double v = number(name, def);
    if (v < lo || v > hi) fail(format("--%s: %g is out of range (%g..%g)", name.c_str(), v, lo, hi));
    return v;
}

void Args::expect_positional(size_t min, size_t max, const char *names) const {
    std::string usage = spec_.usage;
    usage = usage.substr(0, usage.find('\n')); // the first form only: one line
    if (positional_.size() < min)
        fail(format("missing %s (usage: flowlib %s %s)", names, spec_.name, usage.c_str()));
    if (positional_.size() > max)
        fail(format("unexpected argument \"%s\" (usage: flowlib %s %s)",
                    positional_[max].c_str(), spec_.name, usage.c_str()));
}

void Args::set_default(const std::string &name, const std::string &value) {
    if (!values_.count(name)) values_[name] = value;
}

} // namespace cli
