// The engine-file reader: framing (magic, version, lengths, CRC-32), then the JSON header field by field, with the
// same checks and limits as python/ghostfast/program.py's load_program, so both front ends accept the same files.
#include "ghostfast/model_file.h"

#include <array>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/file_bytes.h"

// Tensor data is copied with memcpy: the format is little-endian, and so is every target ghostfast builds for.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the engine-file reader assumes a little-endian host");

namespace ghostfast {
namespace {

using json = nlohmann::json;

constexpr char kMagic[8] = {'G', 'H', 'S', 'T', 'F', 'A', 'S', 'T'};
constexpr size_t kPreamble = 8 + 4 + 8;  // magic, version, header length
constexpr uint64_t kMaxFileBytes = 4ull << 30;
constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt32Min = std::numeric_limits<int32_t>::min();

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> table{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        table[i] = c;
    }
    return table;
}

template <class T>
T read_le(const uint8_t* p) {
    T v = 0;
    for (size_t i = 0; i < sizeof(T); ++i) v |= static_cast<T>(p[i]) << (8 * i);
    return v;
}

// A JSON value as it may appear in a one-line message: short, printable ASCII only.
std::string brief(const json& x) {
    std::string s = x.dump(-1, ' ', true, json::error_handler_t::replace);
    if (s.size() > 40) s = s.substr(0, 37) + "...";
    return s;
}

// One line of printable text from a message that may quote the file's bytes (nlohmann's parse errors do).
std::string printable(const std::string& s) {
    std::string out;
    for (char ch : s) out += (ch >= 0x20 && ch < 0x7f) ? ch : '?';
    return out.size() > 200 ? out.substr(0, 197) + "..." : out;
}

// The first 256 code points of a UTF-8 string (load_program keeps op names to 256 characters).
std::string first_code_points(const std::string& s, size_t count) {
    size_t i = 0;
    for (size_t n = 0; i < s.size() && n < count; ++n) {
        ++i;
        while (i < s.size() && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) ++i;  // continuation bytes
    }
    return s.substr(0, i);
}

// Field checks; every message names the file.
class HeaderReader {
public:
    explicit HeaderReader(const std::string& name) : name_(name) {}

    [[noreturn]] void corrupt(const std::string& what) const {
        throw ModelFileError(name_ + ": corrupted model file: " + what);
    }

    int64_t integer(const json& x, const std::string& what, int64_t lo = 0, int64_t hi = kInt32Max) const {
        // json's booleans are not numbers here (Python's bool is an int, which load_program also rejects);
        // floats such as 1.0 are rejected as Python's json would give a float.
        bool ok = false;
        int64_t v = 0;
        if (x.is_number_unsigned()) {
            const uint64_t u = x.get<uint64_t>();
            ok = u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
            v = static_cast<int64_t>(u);
        } else if (x.is_number_integer()) {
            ok = true;
            v = x.get<int64_t>();
        }
        if (!ok || v < lo || v > hi)
            corrupt(what + " must be an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " +
                    brief(x));
        return v;
    }

    std::vector<int32_t> ints(const json& x, const std::string& what, size_t length = 0) const {
        if (!x.is_array() || (length != 0 && x.size() != length) || x.size() > 4096)
            corrupt(what + " must be a list" + (length != 0 ? " of " + std::to_string(length) : std::string()) +
                    ", got " + brief(x));
        std::vector<int32_t> out;
        out.reserve(x.size());
        for (const json& e : x) out.push_back(static_cast<int32_t>(integer(e, what, kInt32Min, kInt32Max)));
        return out;
    }

    const json& list(const json& x, const std::string& what) const {
        if (!x.is_array() || x.size() > 1000000) corrupt(what + " must be a list, got " + brief(x));
        return x;
    }

private:
    const std::string& name_;
};

// obj[key], or null when obj lacks it (json's operator[] on a const object must not be given a missing key).
const json& field(const json& obj, const char* key) {
    static const json null_value;
    const auto it = obj.find(key);
    return it == obj.end() ? null_value : *it;
}

TensorSpec read_tensor(const HeaderReader& r, const json& spec, size_t i, const uint8_t* data, uint64_t data_size) {
    const std::string t = "tensor " + std::to_string(i);
    if (!spec.is_object()) r.corrupt(t + " description must be an object, got " + brief(spec));
    const std::vector<int32_t> dims = r.ints(field(spec, "shape"), t + " shape");
    bool valid = !dims.empty() && dims.size() <= 4;
    for (int32_t d : dims) valid = valid && d >= 0;
    if (!valid) r.corrupt(t + " has an invalid shape " + brief(field(spec, "shape")));
    const auto size = static_cast<int64_t>(data_size);
    const int64_t off = r.integer(field(spec, "offset"), t + " offset", 0, size);
    const int64_t nbytes = r.integer(field(spec, "nbytes"), t + " size", 0, size - off);
    // The data section starts 64-byte aligned; a float at an offset that is not a multiple of 4 was not written
    // by save_program.
    if (off % 4 != 0) r.corrupt(t + " offset " + std::to_string(off) + " is not a multiple of 4");
    // prod(shape), capped once it passes what the data section could hold so that 4 dims of 2^31 cannot overflow.
    int64_t count = 1;
    for (int32_t d : dims) count = (count > size) ? count : count * d;
    for (int32_t d : dims) count = (d == 0) ? 0 : count;
    if (count > size / 4 || 4 * count != nbytes)
        r.corrupt(t + " size " + std::to_string(nbytes) + " does not match its shape " +
                  brief(field(spec, "shape")));
    TensorSpec out;
    out.shape.assign(dims.begin(), dims.end());
    out.data.resize(static_cast<size_t>(count));
    if (count > 0) std::memcpy(out.data.data(), data + off, static_cast<size_t>(nbytes));
    return out;
}

OpSpec read_op(const HeaderReader& r, const json& op, size_t i) {
    const std::string o = "op " + std::to_string(i);
    if (!op.is_array() || op.size() != 6 || !op[5].is_string())
        r.corrupt(o + " must be a list [type, inputs, output, params, tensors, name], got " + brief(op));
    OpSpec out;
    out.type = static_cast<int32_t>(r.integer(op[0], o + " type"));
    out.inputs = r.ints(op[1], o + " inputs");
    out.output = static_cast<int32_t>(r.integer(op[2], o + " output"));
    out.params = r.ints(op[3], o + " params");
    out.tensors = r.ints(op[4], o + " tensors");
    out.name = first_code_points(op[5].get<std::string>(), 256);
    return out;
}

ModelMeta read_meta(const json& header) {
    // The meta only labels the results; load_program does not check it, so a malformed field is left empty
    // rather than rejecting a file whose program is sound.
    ModelMeta meta;
    const json& m = field(header, "meta");
    if (!m.is_object()) return meta;
    const json& model = field(m, "model");
    if (model.is_string()) meta.model = model.get<std::string>();
    const json& shape = field(m, "input_shape");
    if (shape.is_array() && shape.size() <= 4) {
        for (const json& d : shape) {
            if (!d.is_number_integer()) return ModelMeta{meta.model, {}};
            meta.input_shape.push_back(d.get<int64_t>());
        }
    }
    return meta;
}

}  // namespace

uint32_t crc32(const uint8_t* bytes, size_t size, uint32_t crc) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    crc = ~crc;
    for (size_t i = 0; i < size; ++i) crc = table[(crc ^ bytes[i]) & 0xFFu] ^ (crc >> 8);
    return ~crc;
}

ModelFile parse_model_file(const uint8_t* bytes, size_t size, const std::string& name) {
    auto fail = [&](const std::string& what) -> void { throw ModelFileError(name + ": " + what); };
    if (size < kPreamble + 4)
        fail("not a ghostfast model file (only " + std::to_string(size) + " bytes)");
    if (std::memcmp(bytes, kMagic, sizeof kMagic) != 0) fail("not a ghostfast model file (bad magic)");
    const auto version = read_le<uint32_t>(bytes + 8);
    if (version != kModelFileVersion)
        fail("model-file format version " + std::to_string(version) + "; this ghostfast reads version " +
             std::to_string(kModelFileVersion) + " (recompile the model with this version)");
    if (crc32(bytes, size - 4) != read_le<uint32_t>(bytes + size - 4))
        fail("truncated or corrupted (checksum mismatch)");
    // The header and its padding must end before the checksum (load_program only bounds the header by the file).
    const auto head_len = read_le<uint64_t>(bytes + 12);
    const uint64_t head_end = kPreamble + head_len;
    const uint64_t data_start = (head_end + 63) / 64 * 64;
    if (head_len > kModelFileMaxHeader || data_start > size - 4)
        fail("corrupted model file: header length " + std::to_string(head_len) + " exceeds the file");

    json header;
    try {
        // Nothing in a valid header nests deeper than 4; a file of 64 MiB of '[' would otherwise build 64 Mi
        // nested arrays (gigabytes) before any field check ran.
        header = json::parse(bytes + kPreamble, bytes + head_end, [&](int depth, json::parse_event_t, json&) {
            if (depth > 32) fail("corrupted model file: the header nests deeper than 32 levels");
            return true;
        });
    } catch (const json::exception& e) {
        fail("corrupted model file: unreadable header (" + printable(e.what()) + ")");
    }
    HeaderReader r(name);
    if (!header.is_object() || !field(header, "program").is_object()) r.corrupt("no program in the header");
    const json& p = field(header, "program");

    ModelFile out;
    out.version = version;
    ProgramSpec& prog = out.program;
    const json& tensors = r.list(field(p, "tensors"), "tensors");
    prog.tensors.reserve(tensors.size());
    for (size_t i = 0; i < tensors.size(); ++i)
        prog.tensors.push_back(read_tensor(r, tensors[i], i, bytes + data_start, size - 4 - data_start));
    const json& ops = r.list(field(p, "ops"), "ops");
    prog.ops.reserve(ops.size());
    for (size_t i = 0; i < ops.size(); ++i) prog.ops.push_back(read_op(r, ops[i], i));
    prog.max_batch = static_cast<int32_t>(r.integer(field(p, "max_batch"), "max_batch", 1, 4096));
    prog.input_value = static_cast<int32_t>(r.integer(field(p, "input_value"), "input_value"));
    prog.output_value = static_cast<int32_t>(r.integer(field(p, "output_value"), "output_value"));
    for (const json& b : r.list(field(p, "buffers"), "buffers")) {
        const std::vector<int32_t> v = r.ints(b, "buffer", 3);
        prog.buffers.push_back(BufferSpec{v[0], v[1], v[2]});
    }
    for (const json& b : r.list(field(p, "values"), "values")) {
        const std::vector<int32_t> v = r.ints(b, "value", 3);
        prog.values.push_back(ValueSpec{v[0], v[1], v[2]});
    }
    out.meta = read_meta(header);
    return out;
}

ModelFile load_model_file(const std::string& path) {
    std::vector<uint8_t> bytes;
    std::string error;
    if (!io::read_file_bytes(path, kMaxFileBytes, bytes, error))
        throw ModelFileError("cannot read model file " + path + ": " + error);
    return parse_model_file(bytes.data(), bytes.size(), path);
}

}  // namespace ghostfast
