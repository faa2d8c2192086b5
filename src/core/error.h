// Typed errors of the core. Only src/capi/ turns them into flow_status codes;
// everything below it throws flow::Error and never prints or aborts.
#pragma once

#include <stdexcept>
#include <string>

namespace flow {

enum class Status : int {
    invalid_argument = -1,
    spec = -2,
    io = -3,
    format = -4,
    out_of_memory = -5,
    device = -6,
    unsupported = -7,
    numeric = -8,
    buffer_too_small = -9,
    internal = -100,
};

class Error : public std::runtime_error {
public:
    Error(Status status, const std::string &message)
        : std::runtime_error(message), status_(status) {}
    Status status() const { return status_; }

private:
    Status status_;
};

[[noreturn]] inline void fail(Status status, const std::string &message) {
    throw Error(status, message);
}

} // namespace flow
