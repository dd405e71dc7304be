// Reading engine files (format version 1, written by python/ghostfast/program.py's save_program) without Python.
//
//     8 bytes   magic "GHSTFAST"
//     4 bytes   format version (uint32, little-endian)
//     8 bytes   header length H (uint64, little-endian)
//     H bytes   UTF-8 JSON {"program": {...}, "meta": {...}}; tensors as {"shape", "offset", "nbytes"}
//     padding   zeros up to a multiple of 64 bytes
//     D bytes   tensor data: little-endian float32 at the header's offsets (relative to this section)
//     4 bytes   CRC-32 (zlib's) of every byte before it
//
// The file is untrusted: the reader makes every structural check python's load_program makes (and rejects tensor
// offsets that are not float-aligned), so what it returns is safe to hand to Engine, whose constructor then checks
// the program's semantics (indices, shapes, parameters) and throws std::invalid_argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "ghostfast/engine.h"

namespace ghostfast {

// A file that cannot be read, is not an engine file, has another format version, or is truncated or corrupted.
// what() is one line that names the file and what is wrong with it.
class ModelFileError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// The header's "meta": what compile() recorded about the model. Fields the file lacks stay empty.
struct ModelMeta {
    std::string model;                  // the zoo name or module class, e.g. "ghostnet_100"
    std::vector<int64_t> input_shape;   // (C, H, W) of one image
};

struct ModelFile {
    ProgramSpec program;  // tensors own their data
    ModelMeta meta;
    uint32_t version = 0;
};

constexpr uint32_t kModelFileVersion = 1;
constexpr uint64_t kModelFileMaxHeader = 64ull << 20;

// Reads and checks an engine file; throws ModelFileError.
ModelFile load_model_file(const std::string& path);

// The same from bytes already in memory; `name` stands for the file in error messages.
ModelFile parse_model_file(const uint8_t* bytes, size_t size, const std::string& name);

// zlib's CRC-32 (reflected polynomial 0xEDB88320), continued from `crc` (0 to start).
uint32_t crc32(const uint8_t* bytes, size_t size, uint32_t crc = 0);

}  // namespace ghostfast
