// Reading a whole file into memory, for the engine-file and .npy readers (internal to ghostfast_io).
#pragma once

#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace ghostfast::io {

// Reads `path` into `out`. On failure returns false and sets `error` to a phrase that completes
// "cannot read PATH: ...". Only regular files are read: a FIFO or a device such as /dev/zero would block or never
// end, and a directory opens but cannot be read.
inline bool read_file_bytes(const std::string& path, uint64_t max_bytes, std::vector<uint8_t>& out,
                            std::string& error) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        error = std::strerror(errno);
        return false;
    }
    if (!S_ISREG(st.st_mode)) {
        error = S_ISDIR(st.st_mode) ? "it is a directory" : "it is not a regular file";
        return false;
    }
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
        error = "it is larger than " + std::to_string(max_bytes) + " bytes";
        return false;
    }
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (f == nullptr) {
        error = std::strerror(errno);
        return false;
    }
    out.resize(static_cast<size_t>(st.st_size));
    const size_t got = out.empty() ? 0 : std::fread(out.data(), 1, out.size(), f);
    const bool failed = std::ferror(f) != 0;
    std::fclose(f);
    if (failed || got != out.size()) {
        // The file shrank between stat and read, or the device failed: either way its bytes are not all there.
        error = failed ? "read error" : "the file changed while it was read";
        return false;
    }
    return true;
}

}  // namespace ghostfast::io
