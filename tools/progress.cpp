#include "progress.h"

#include <cstdio>

#include <unistd.h>

#include "common.h"

namespace cli {

Progress::Progress(bool quiet) : quiet_(quiet), tty_(isatty(fileno(stderr)) != 0) {}

Progress::~Progress() { finish(); }

void Progress::update(const std::string &line, bool force) {
    if (quiet_) return;
    double t = now_seconds();
    if (!force && t - last_ < (tty_ ? 0.25 : 10.0)) return;
    last_ = t;
    if (tty_) {
        std::string padded = line;
        if (padded.size() < width_) padded.append(width_ - padded.size(), ' ');
        std::fprintf(stderr, "\r%s", padded.c_str());
        width_ = line.size();
        drawn_ = true;
    } else {
        std::fprintf(stderr, "%s\n", line.c_str());
    }
    std::fflush(stderr);
}

void Progress::message(const std::string &line) {
    if (quiet_) return;
    if (drawn_) {
        std::fprintf(stderr, "\r%*s\r", (int)width_, "");
        drawn_ = false;
        width_ = 0;
    }
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
    last_ = -1e9; // redraw at the next update
}

void Progress::finish() {
    if (drawn_) {
        std::fprintf(stderr, "\n");
        std::fflush(stderr);
        drawn_ = false;
        width_ = 0;
    }
}

} // namespace cli
