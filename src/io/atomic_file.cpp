#include "io/atomic_file.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

namespace flow {
namespace {

// Larger single transfers fail on some systems (macOS rejects > INT_MAX).
constexpr size_t max_transfer = size_t(1) << 30;

[[noreturn]] void io_error(const char *verb, const std::string &path, int err) {
    fail(Status::io, std::string("cannot ") + verb + " '" + path +
                         "': " + std::generic_category().message(err));
}

[[noreturn]] void too_large(const std::string &path, size_t max_bytes) {
    fail(Status::format,
         "cannot read '" + path + "': larger than " + std::to_string(max_bytes) + " bytes");
}

// Returns 0 or the errno of the failed write.
int write_all(int fd, const char *p, size_t len) {
    while (len > 0) {
        const ssize_t n = write(fd, p, len < max_transfer ? len : max_transfer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return errno;
        if (n == 0) // cannot happen for regular files; avoids spinning forever
            return EIO;
        p += n;
        len -= static_cast<size_t>(n);
    }
    return 0;
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    ~Fd() { close(fd_); }
    Fd(const Fd &) = delete;
    Fd &operator=(const Fd &) = delete;
    int get() const { return fd_; }

private:
    int fd_;
};

// The mode a plain open(path, O_CREAT, 0666) would give: the old file's mode
// when replacing one, else 0666 less the umask. umask() itself cannot be read
// without setting it (not thread-safe), so Linux's /proc answers.
mode_t new_file_mode(const std::string &path) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0) return st.st_mode & 07777;
    mode_t mask = 022;
    if (FILE *f = std::fopen("/proc/self/status", "r")) {
        char line[256];
        unsigned value;
        while (std::fgets(line, sizeof line, f))
            if (std::sscanf(line, "Umask: %o", &value) == 1) mask = (mode_t)value;
        std::fclose(f);
    }
    return 0666 & ~mask;
}

} // namespace

void write_file_atomic(const std::string &path, const void *data, size_t len) {
    std::string tmp = path + ".tmp.XXXXXX";
    const int fd = mkstemp(&tmp[0]);
    if (fd < 0)
        io_error("write", path, errno);
    int err = fchmod(fd, new_file_mode(path)) == 0 ? 0 : errno;
    if (err == 0) err = write_all(fd, static_cast<const char *>(data), len);
    // Without the fsync a crash after the rename could leave an empty file.
    if (err == 0 && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && err == 0)
        err = errno;
    if (err == 0 && rename(tmp.c_str(), path.c_str()) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp.c_str());
        io_error("write", path, err);
    }
}

std::vector<uint8_t> read_file(const std::string &path, size_t max_bytes) {
    const int raw = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (raw < 0)
        io_error("read", path, errno);
    Fd fd(raw);

    // Read up to one byte past the limit to tell "exactly max_bytes" from
    // "larger". The size from fstat only spares reading a file known to be
    // too large and sizes the buffer: pipes report 0, and files can grow.
    const size_t cap = max_bytes < std::numeric_limits<size_t>::max() ? max_bytes + 1 : max_bytes;
    struct stat st;
    size_t hint = 0;
    if (fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode)) {
        if (static_cast<uint64_t>(st.st_size) > max_bytes)
            too_large(path, max_bytes);
        hint = static_cast<size_t>(st.st_size) + 1; // + 1 sees EOF without growing
    }

    std::vector<uint8_t> buf(hint);
    size_t used = 0;
    for (;;) {
        if (used == buf.size()) {
            if (used >= cap)
                break;
            const size_t grown = used < 65536 ? 65536 : used * 2;
            buf.resize(grown < cap && grown > used ? grown : cap);
        }
        const size_t want = buf.size() - used;
        const ssize_t n = read(fd.get(), buf.data() + used, want < max_transfer ? want : max_transfer);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            io_error("read", path, errno);
        if (n == 0)
            break;
        used += static_cast<size_t>(n);
    }
    if (used > max_bytes)
        too_large(path, max_bytes);
    buf.resize(used);
    return buf;
}

} // namespace flow
