// NumPy .npy arrays of float32 without Python: what ghostfast-bench reads as input and writes as logits.
//
// Reading accepts format versions 1.0, 2.0 and 3.0 holding little-endian float32 ('<f4') in C order, of any shape;
// every other dtype or Fortran order is refused with a one-line message that names what the file holds, so a user
// who saved float64 learns that from the error instead of from wrong numbers. Writing produces version 1.0, which
// every NumPy reads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace ghostfast {

// A file that cannot be read or written, is not a .npy file, or holds something other than C-order float32.
// what() is one line that names the file.
class NpyError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

struct NpyArray {
    std::vector<int64_t> shape;  // empty for a 0-d array (one element)
    std::vector<float> data;     // C order, prod(shape) floats
};

NpyArray load_npy(const std::string& path);

// The same from bytes in memory; `name` stands for the file in error messages.
NpyArray parse_npy(const uint8_t* bytes, size_t size, const std::string& name);

// The bytes of a version 1.0 .npy file holding prod(shape) floats from `data` ('<f4', C order).
std::string encode_npy(const std::vector<int64_t>& shape, const float* data);

void save_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data);

}  // namespace ghostfast
