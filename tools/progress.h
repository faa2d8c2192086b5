// The live progress line: redrawn in place (\r) on a terminal, printed as
// whole lines every few seconds when stderr is a file or a pipe.
#pragma once

#include <string>

namespace cli {

class Progress {
public:
    explicit Progress(bool quiet);
    ~Progress();
    // Shows line; rate-limited unless force.
    void update(const std::string &line, bool force = false);
    // Prints a message on its own line (keeps the progress line intact).
    void message(const std::string &line);
    bool tty() const { return tty_; }
    // Ends the progress line.
    void finish();

private:
    bool quiet_, tty_;
    bool drawn_ = false;
    size_t width_ = 0;
    double last_ = -1e9;
};

} // namespace cli
