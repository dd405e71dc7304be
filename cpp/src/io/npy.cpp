// .npy reading and writing for float32. The header is a Python dict literal; NumPy writes one fixed form
// ({'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }), and a small recursive-descent parser over the
// literals that form can hold (strings, True/False/None, integers, tuples, lists) reads it without evaluating
// anything.
#include "ghostfast/npy.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>

#include "io/file_bytes.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the .npy reader assumes a little-endian host");

namespace ghostfast {
namespace {

constexpr char kMagic[6] = {'\x93', 'N', 'U', 'M', 'P', 'Y'};
constexpr size_t kMaxHeader = 1 << 16;  // NumPy itself refuses headers over 10000 bytes by default
constexpr uint64_t kMaxFileBytes = 4ull << 30;

// A Python literal from the header.
struct Literal {
    enum Kind { kString, kBool, kNone, kInt, kTuple, kList, kDict } kind = kNone;
    std::string text;            // kString
    int64_t number = 0;          // kInt; kBool: 0 or 1
    std::vector<Literal> items;  // kTuple, kList; kDict: key, value, key, value...
};

class HeaderParser {
public:
    HeaderParser(const std::string& text, const std::string& name) : s_(text), name_(name) {}

    Literal parse() {
        Literal top = value(0);
        skip_space();
        if (pos_ != s_.size()) fail("unexpected text after the header dict");
        return top;
    }

private:
    [[noreturn]] void fail(const std::string& what) const {
        throw NpyError(name_ + ": not a valid .npy file (header: " + what + " at byte " + std::to_string(pos_) + ")");
    }
    void skip_space() {
        while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n' || s_[pos_] == '\t' || s_[pos_] == '\r'))
            ++pos_;
    }
    bool take(char c) {
        skip_space();
        if (pos_ < s_.size() && s_[pos_] == c) {
            ++pos_;
            return true;
        }
        return false;
    }
    bool take_word(const char* w) {
        const size_t n = std::strlen(w);
        if (s_.compare(pos_, n, w) != 0) return false;
        pos_ += n;
        return true;
    }

    Literal value(int depth) {
        // The fixed form nests three deep (dict, shape tuple, int); a structured dtype a little more.
        if (depth > 16) fail("nested too deeply");
        skip_space();
        if (pos_ >= s_.size()) fail("unexpected end");
        Literal v;
        const char c = s_[pos_];
        if (c == '\'' || c == '"') {
            v.kind = Literal::kString;
            v.text = string_literal();
        } else if (c == '{' || c == '(' || c == '[') {
            v.kind = c == '{' ? Literal::kDict : c == '(' ? Literal::kTuple : Literal::kList;
            const char close = c == '{' ? '}' : c == '(' ? ')' : ']';
            ++pos_;
            while (!take(close)) {
                v.items.push_back(value(depth + 1));
                if (v.kind == Literal::kDict) {
                    if (v.items.back().kind != Literal::kString) fail("a dict key that is not a string");
                    if (!take(':')) fail("':' expected");
                    v.items.push_back(value(depth + 1));
                }
                if (!take(',')) {
                    if (!take(close)) fail(std::string("',' or '") + close + "' expected");
                    break;
                }
            }
        } else if (take_word("True")) {
            v.kind = Literal::kBool;
            v.number = 1;
        } else if (take_word("False")) {
            v.kind = Literal::kBool;
        } else if (take_word("None")) {
            v.kind = Literal::kNone;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            v.kind = Literal::kInt;
            v.number = integer();
        } else {
            fail("unexpected character");
        }
        return v;
    }

    std::string string_literal() {
        const char quote = s_[pos_++];
        std::string out;
        while (pos_ < s_.size() && s_[pos_] != quote) {
            if (s_[pos_] == '\\' && pos_ + 1 < s_.size()) ++pos_;  // an escaped character stands for itself here
            out += s_[pos_++];
        }
        if (pos_ >= s_.size()) fail("unterminated string");
        ++pos_;
        return out;
    }

    int64_t integer() {
        const bool negative = s_[pos_] == '-';
        if (negative) ++pos_;
        if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') fail("digit expected");
        int64_t v = 0;
        while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
            const int d = s_[pos_++] - '0';
            if (v > (std::numeric_limits<int64_t>::max() - d) / 10) fail("integer too large");
            v = v * 10 + d;
        }
        if (pos_ < s_.size() && s_[pos_] == 'L') ++pos_;  // Python 2 wrote long integers as 2L
        return negative ? -v : v;
    }

    const std::string& s_;
    const std::string& name_;
    size_t pos_ = 0;
};

// "float64", "big-endian float32", "int8", "bool", "str", ... for a simple descr such as '<f8'.
std::string dtype_name(const std::string& descr) {
    if (descr.size() < 2) return "an unknown dtype";
    const char order = descr[0], kind = descr[1];
    const std::string size = descr.substr(2);
    int bytes = 0;
    for (char ch : size) bytes = (ch >= '0' && ch <= '9' && bytes < 1000) ? bytes * 10 + (ch - '0') : -1;
    std::string name;
    switch (kind) {
        case 'f': name = bytes > 0 ? "float" + std::to_string(8 * bytes) : ""; break;
        case 'i': name = bytes > 0 ? "int" + std::to_string(8 * bytes) : ""; break;
        case 'u': name = bytes > 0 ? "uint" + std::to_string(8 * bytes) : ""; break;
        case 'c': name = bytes > 0 ? "complex" + std::to_string(8 * bytes) : ""; break;
        case 'b': name = "bool"; break;
        case 'U': name = "str"; break;
        case 'S': name = "bytes"; break;
        case 'O': name = "object"; break;
        case 'M': name = "datetime64"; break;
        case 'm': name = "timedelta64"; break;
        case 'V': name = "void"; break;
        default: break;
    }
    if (name.empty()) return "an unknown dtype";
    if (bytes > 1 && order == '>') return "big-endian " + name;
    if (bytes > 1 && order == '=') return "native-order " + name;
    return name;
}

const Literal* dict_get(const Literal& dict, const char* key) {
    for (size_t i = 0; i + 1 < dict.items.size(); i += 2)
        if (dict.items[i].text == key) return &dict.items[i + 1];
    return nullptr;
}

}  // namespace

NpyArray parse_npy(const uint8_t* bytes, size_t size, const std::string& name) {
    auto fail = [&](const std::string& what) -> void { throw NpyError(name + ": " + what); };
    if (size < 10 || std::memcmp(bytes, kMagic, sizeof kMagic) != 0)
        fail(size < 10 ? "not a .npy file (only " + std::to_string(size) + " bytes)" : "not a .npy file (bad magic)");
    const int major = bytes[6], minor = bytes[7];
    if (major < 1 || major > 3 || minor != 0)
        fail(".npy format version " + std::to_string(major) + "." + std::to_string(minor) +
             " is not supported (1.0, 2.0 and 3.0 are)");
    // Version 1.0 stores the header length in 2 bytes; 2.0 and 3.0 (3.0: UTF-8 header) in 4.
    const size_t len_bytes = major == 1 ? 2 : 4;
    if (size < 6 + 2 + len_bytes) fail("truncated .npy file (" + std::to_string(size) + " bytes)");
    size_t header_len = 0;
    for (size_t i = 0; i < len_bytes; ++i) header_len |= static_cast<size_t>(bytes[8 + i]) << (8 * i);
    const size_t header_start = 8 + len_bytes;
    if (header_len > kMaxHeader) fail(".npy header of " + std::to_string(header_len) + " bytes is too long");
    if (header_len > size - header_start) fail("truncated .npy file (the header runs past the end)");
    const std::string text(reinterpret_cast<const char*>(bytes + header_start), header_len);

    const Literal header = HeaderParser(text, name).parse();
    if (header.kind != Literal::kDict) fail("not a valid .npy file (the header is not a dict)");
    const Literal* descr = dict_get(header, "descr");
    const Literal* fortran = dict_get(header, "fortran_order");
    const Literal* shape = dict_get(header, "shape");
    if (descr == nullptr || fortran == nullptr || shape == nullptr || header.items.size() != 6)
        fail("not a valid .npy file (the header must have exactly the keys 'descr', 'fortran_order', 'shape')");
    if (descr->kind != Literal::kString)
        fail("holds a structured dtype; ghostfast reads float32 ('<f4') only");
    if (descr->text != "<f4")
        fail("holds " + dtype_name(descr->text) + " ('" + descr->text + "'); ghostfast reads float32 ('<f4') only");
    if (fortran->kind != Literal::kBool) fail("not a valid .npy file ('fortran_order' is not True or False)");
    if (fortran->number != 0)
        fail("holds a Fortran-order array; ghostfast reads C order only (save np.ascontiguousarray(x))");
    if (shape->kind != Literal::kTuple) fail("not a valid .npy file ('shape' is not a tuple)");

    NpyArray out;
    const uint64_t data_bytes = size - header_start - header_len;
    uint64_t count = 1;
    for (const Literal& d : shape->items) {
        if (d.kind != Literal::kInt || d.number < 0) fail("not a valid .npy file (a shape entry is not a size)");
        out.shape.push_back(d.number);
        // Capped above what the file could hold, so a huge shape cannot overflow the product.
        count = count > data_bytes ? count : count * static_cast<uint64_t>(d.number);
    }
    for (int64_t d : out.shape) count = d == 0 ? 0 : count;
    if (count > data_bytes / 4 || count * 4 != data_bytes)
        fail("truncated or corrupted .npy file (its shape needs " +
             (count > data_bytes ? std::string("more than ") + std::to_string(data_bytes) : std::to_string(count * 4)) +
             " bytes of data, the file has " + std::to_string(data_bytes) + ")");
    out.data.resize(static_cast<size_t>(count));
    if (count > 0) std::memcpy(out.data.data(), bytes + header_start + header_len, static_cast<size_t>(data_bytes));
    return out;
}

NpyArray load_npy(const std::string& path) {
    std::vector<uint8_t> bytes;
    std::string error;
    if (!io::read_file_bytes(path, kMaxFileBytes, bytes, error)) throw NpyError("cannot read " + path + ": " + error);
    return parse_npy(bytes.data(), bytes.size(), path);
}

std::string encode_npy(const std::vector<int64_t>& shape, const float* data) {
    std::string dims;
    size_t count = 1;
    for (int64_t d : shape) {
        if (d < 0) throw NpyError("cannot encode a .npy array of negative size " + std::to_string(d));
        dims += std::to_string(d) + ", ";
        count *= static_cast<size_t>(d);
    }
    if (shape.size() > 1) dims.resize(dims.size() - 2);  // (2, 3); a 1-d tuple keeps its comma: (5,)
    else if (shape.size() == 1) dims.resize(dims.size() - 1);
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + dims + "), }";
    // Spaces and a newline up to a multiple of 64 bytes, as NumPy pads, so the data starts aligned.
    const size_t unpadded = sizeof kMagic + 2 + 2 + header.size() + 1;
    header.append((64 - unpadded % 64) % 64, ' ');
    header += '\n';
    if (header.size() > 0xFFFF) throw NpyError("cannot encode a .npy header of " + std::to_string(header.size()) +
                                               " bytes in format version 1.0");
    std::string out(kMagic, sizeof kMagic);
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(header.size() & 0xFF);
    out += static_cast<char>(header.size() >> 8);
    out += header;
    out.append(reinterpret_cast<const char*>(data), count * sizeof(float));
    return out;
}

void save_npy(const std::string& path, const std::vector<int64_t>& shape, const float* data) {
    const std::string bytes = encode_npy(shape, data);
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (f == nullptr) throw NpyError("cannot write " + path + ": " + std::strerror(errno));
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    const int write_errno = errno;
    if (std::fclose(f) != 0 || !written)
        throw NpyError("cannot write " + path + ": " + std::strerror(written ? errno : write_errno));
}

}  // namespace ghostfast
