// .npy reading and writing: NumPy's own files (versions 1.0, 2.0, 3.0; 0-d, 1-d, empty), byte-identical writing,
// and a one-line error naming what the file holds for every other dtype, order or malformed header.
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "ghostfast/npy.h"

namespace {

using Bytes = std::vector<uint8_t>;

std::string data_path(const std::string& name) { return std::string(GHOSTFAST_TEST_DATA_DIR) + "/" + name; }

Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in, "missing fixture " << path << " (run tests/fixtures/make_cpp_fixtures.py)");
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A .npy file with any header text (padded like NumPy's) and data bytes.
Bytes npy(const std::string& header, size_t data_bytes, int major = 1) {
    const size_t len_bytes = major == 1 ? 2 : 4;
    std::string h = header;
    while ((8 + len_bytes + h.size() + 1) % 64 != 0) h += ' ';
    h += '\n';
    Bytes b = {0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<uint8_t>(major), 0};
    for (size_t i = 0; i < len_bytes; ++i) b.push_back(static_cast<uint8_t>(h.size() >> (8 * i)));
    b.insert(b.end(), h.begin(), h.end());
    b.resize(b.size() + data_bytes, 0);
    return b;
}

std::string dict(const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string error_of(const Bytes& b) {
    try {
        ghostfast::parse_npy(b.data(), b.size(), "x.npy");
    } catch (const ghostfast::NpyError& e) {
        return e.what();
    }
    FAIL("the file was accepted");
    return "";
}

#define CHECK_NPY_ERROR(bytes, part)                                                                               \
    do {                                                                                                           \
        const std::string msg_ = error_of(bytes);                                                                  \
        CHECK_MESSAGE(contains(msg_, part), "error was: " << msg_);                                                \
        CHECK_MESSAGE(msg_.rfind("x.npy: ", 0) == 0, "error does not name the file: " << msg_);                    \
        CHECK_MESSAGE(msg_.find('\n') == std::string::npos, "error is not one line: " << msg_);                    \
    } while (0)

// np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8 - 1, as make_cpp_fixtures.py writes it.
std::vector<float> arange_fixture() {
    std::vector<float> v(24);
    for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i) / 8 - 1;
    return v;
}

}  // namespace

TEST_SUITE("npy") {

TEST_CASE("NumPy's files in every format version and rank") {
    for (const char* name : {"npy_v2.npy", "npy_v3.npy"}) {
        const ghostfast::NpyArray a = ghostfast::load_npy(data_path(name));
        CHECK(a.shape == std::vector<int64_t>{2, 3, 4});
        CHECK(a.data == arange_fixture());
    }
    const ghostfast::NpyArray scalar = ghostfast::load_npy(data_path("npy_scalar.npy"));
    CHECK(scalar.shape.empty());
    CHECK(scalar.data == std::vector<float>{2.5f});
    const ghostfast::NpyArray vec = ghostfast::load_npy(data_path("npy_vector.npy"));
    CHECK(vec.shape == std::vector<int64_t>{3});
    CHECK(vec.data == std::vector<float>{1.5f, -2.0f, 3.25f});
    const ghostfast::NpyArray empty = ghostfast::load_npy(data_path("npy_empty.npy"));
    CHECK(empty.shape == std::vector<int64_t>{0, 3});
    CHECK(empty.data.empty());
}

TEST_CASE("writing gives NumPy's bytes exactly") {
    // np.save of a (2, 3, 9, 9) float32 array: the same header text, padding and data.
    const Bytes numpy_file = read_bytes(data_path("tiny_input.npy"));
    const ghostfast::NpyArray x = ghostfast::load_npy(data_path("tiny_input.npy"));
    CHECK(x.shape == std::vector<int64_t>{2, 3, 9, 9});
    const std::string mine = ghostfast::encode_npy(x.shape, x.data.data());
    CHECK(Bytes(mine.begin(), mine.end()) == numpy_file);
    for (const char* name : {"npy_scalar.npy", "npy_vector.npy", "npy_empty.npy"}) {
        const ghostfast::NpyArray a = ghostfast::load_npy(data_path(name));
        const std::string again = ghostfast::encode_npy(a.shape, a.data.data());
        CHECK_MESSAGE(Bytes(again.begin(), again.end()) == read_bytes(data_path(name)), name);
    }
}

TEST_CASE("round trip through a file, header aligned to 64 bytes") {
    const std::vector<std::vector<int64_t>> shapes = {{}, {1}, {7}, {2, 5}, {0, 4}, {1, 3, 1, 1}, {3, 1, 2, 2, 2}};
    for (const auto& shape : shapes) {
        size_t count = 1;
        for (int64_t d : shape) count *= static_cast<size_t>(d);
        std::vector<float> data(count);
        for (size_t i = 0; i < count; ++i) data[i] = 0.25f * static_cast<float>(i) - 3.0f;
        const std::string bytes = ghostfast::encode_npy(shape, data.data());
        CHECK((bytes.size() - count * 4) % 64 == 0);
        const std::string path = "ghostfast_test_roundtrip.npy";  // in ctest's working directory
        ghostfast::save_npy(path, shape, data.data());
        const ghostfast::NpyArray back = ghostfast::load_npy(path);
        std::remove(path.c_str());
        CHECK(back.shape == shape);
        CHECK(back.data == data);
    }
}

TEST_CASE("other dtypes are named in the error") {
    CHECK_NPY_ERROR(read_bytes(data_path("tiny_input_f64.npy")),
                    "holds float64 ('<f8'); ghostfast reads float32 ('<f4') only");
    const std::pair<const char*, const char*> cases[] = {
        {"'>f4'", "holds big-endian float32 ('>f4')"}, {"'<f2'", "holds float16 ('<f2')"},
        {"'<i8'", "holds int64 ('<i8')"},             {"'|u1'", "holds uint8 ('|u1')"},
        {"'|b1'", "holds bool ('|b1')"},              {"'<c8'", "holds complex64 ('<c8')"},
        {"'|O'", "holds object ('|O')"},              {"'<U3'", "holds str ('<U3')"},
        {"'<M8[s]'", "holds datetime64 ('<M8[s]')"},  {"'=f4'", "holds native-order float32 ('=f4')"},
        {"'f4'", "holds an unknown dtype ('f4')"},                           {"''", "an unknown dtype ('')"},
        {"\"<f8\"", "holds float64"},
    };
    for (const auto& [descr, part] : cases) CHECK_NPY_ERROR(npy(dict(descr, "False", "(2,)"), 16), part);
    CHECK_NPY_ERROR(npy(dict("[('a', '<f4'), ('b', '<f4')]", "False", "(2,)"), 16), "holds a structured dtype");
}

TEST_CASE("Fortran order is refused") {
    CHECK_NPY_ERROR(read_bytes(data_path("tiny_input_fortran.npy")), "holds a Fortran-order array");
    CHECK_NPY_ERROR(npy(dict("'<f4'", "1", "(2,)"), 8), "'fortran_order' is not True or False");
}

TEST_CASE("framing and size errors") {
    CHECK_NPY_ERROR(Bytes(), "not a .npy file (only 0 bytes)");
    CHECK_NPY_ERROR(Bytes(9, 0x93), "not a .npy file (only 9 bytes)");
    Bytes b = npy(dict("'<f4'", "False", "(2,)"), 8);
    b[1] = 'n';
    CHECK_NPY_ERROR(b, "bad magic");
    b = npy(dict("'<f4'", "False", "(2,)"), 8);
    b[6] = 4;
    CHECK_NPY_ERROR(b, ".npy format version 4.0 is not supported");
    b[6] = 1;
    b[7] = 1;
    CHECK_NPY_ERROR(b, ".npy format version 1.1 is not supported");
    b = npy(dict("'<f4'", "False", "(2,)"), 8, 2);
    CHECK_NPY_ERROR(Bytes(b.begin(), b.begin() + 11), "truncated .npy file (11 bytes)");
    CHECK_NPY_ERROR(Bytes(b.begin(), b.begin() + 40), "the header runs past the end");
    b = npy(dict("'<f4'", "False", "(2,)"), 8, 2);
    b[11] = 0x7f;  // a 2 GB header length
    CHECK_NPY_ERROR(b, "bytes is too long");
    CHECK_NPY_ERROR(npy(dict("'<f4'", "False", "(2, 3)"), 20), "its shape needs 24 bytes of data, the file has 20");
    CHECK_NPY_ERROR(npy(dict("'<f4'", "False", "(2, 3)"), 28), "its shape needs 24 bytes of data, the file has 28");
    CHECK_NPY_ERROR(npy(dict("'<f4'", "False", "(1099511627776, 1099511627776)"), 8),
                    "needs more than 8 bytes");
    CHECK_NPY_ERROR(npy(dict("'<f4'", "False", "(9223372036854775807, 4)"), 8), "needs more than 8 bytes");
    // 2^32 x 2^32 wraps to 0 in 64 bits: the product must be capped, not wrapped.
    CHECK_NPY_ERROR(npy(dict("'<f4'", "False", "(4294967296, 4294967296)"), 0), "truncated or corrupted");
}

TEST_CASE("malformed headers") {
    const std::pair<std::string, const char*> cases[] = {
        {"{'descr': '<f4', 'fortran_order': False}", "exactly the keys"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "exactly the keys"},
        {"{'descr': '<f4', 'descr': '<f4', 'shape': (2,)}", "exactly the keys"},
        {dict("'<f4'", "False", "[2]"), "'shape' is not a tuple"},
        {dict("'<f4'", "False", "2"), "'shape' is not a tuple"},
        {dict("'<f4'", "False", "(-2,)"), "a shape entry is not a size"},
        {dict("'<f4'", "False", "('2',)"), "a shape entry is not a size"},
        {dict("'<f4'", "False", "(2, None)"), "a shape entry is not a size"},
        {dict("'<f4'", "False", "(99999999999999999999,)"), "integer too large"},
        {"['descr', '<f4']", "the header is not a dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,) }}", "unexpected text after the header dict"},
        {"{'descr': <f4, 'fortran_order': False, 'shape': (2,)}", "unexpected character"},
        {"{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", "',' or '}' expected"},
        {"{'descr' '<f4'}", "':' expected"},
        {"{'descr': '<f4'", "',' or '}' expected"},
        {"{'descr': '<f4' 'x': 1}", "',' or '}' expected"},
        {"{1: 2}", "a dict key that is not a string"},
        {"{'descr': 'abc", "unterminated string"},
        {"{'shape': (-)}", "digit expected"},
        {"", "unexpected end"},
        {"{'shape': " + std::string(40, '(') + std::string(40, ')') + "}", "nested too deeply"},
    };
    for (const auto& [header, part] : cases) {
        CAPTURE(header);
        CHECK_NPY_ERROR(npy(header, 8), part);
    }
}

TEST_CASE("header spellings NumPy accepts") {
    // Python 2 wrote long integers as 2L; double quotes and no trailing comma are valid Python too.
    const std::string headers[] = {
        "{'descr': '<f4', 'fortran_order': False, 'shape': (2L,), }",
        "{\"shape\": (2,), \"fortran_order\": False, \"descr\": \"<f4\"}",
        "{ 'descr' : '<f4' ,\n 'fortran_order' : False , 'shape' : ( 2 , ) }",
    };
    for (const std::string& h : headers) {
        CAPTURE(h);
        const Bytes b = npy(h, 8);
        const ghostfast::NpyArray a = ghostfast::parse_npy(b.data(), b.size(), "x.npy");
        CHECK(a.shape == std::vector<int64_t>{2});
    }
}

TEST_CASE("flipped header bytes give an NpyError or a consistent array, nothing else") {
    const Bytes good = read_bytes(data_path("npy_v2.npy"));
    int accepted = 0, rejected = 0;
    for (size_t i = 0; i < good.size() - 24 * 4; ++i) {
        for (uint8_t bit : {uint8_t{0x01}, uint8_t{0x04}, uint8_t{0x20}, uint8_t{0x80}}) {
            Bytes b = good;
            b[i] ^= bit;
            try {
                const ghostfast::NpyArray a = ghostfast::parse_npy(b.data(), b.size(), "x.npy");
                size_t count = 1;
                for (int64_t d : a.shape) count *= static_cast<size_t>(d);
                CHECK(a.data.size() == count);
                ++accepted;
            } catch (const ghostfast::NpyError&) {
                ++rejected;
            }
        }
    }
    INFO(accepted << " accepted, " << rejected << " rejected");
    CHECK(accepted > 0);  // version 2.0 flipped to 3.0 reads the same
    CHECK(rejected > 0);
}

TEST_CASE("file errors name the file") {
    try {
        ghostfast::load_npy(data_path("no_such.npy"));
        FAIL("a missing file was accepted");
    } catch (const ghostfast::NpyError& e) {
        CHECK(std::string(e.what()) == "cannot read " + data_path("no_such.npy") + ": No such file or directory");
    }
    const float one = 1.0f;
    try {
        ghostfast::save_npy("/nonexistent-dir/y.npy", {1}, &one);
        FAIL("writing into a missing directory succeeded");
    } catch (const ghostfast::NpyError& e) {
        CHECK(std::string(e.what()) == "cannot write /nonexistent-dir/y.npy: No such file or directory");
    }
    CHECK_THROWS_AS(ghostfast::encode_npy({2, -1}, &one), ghostfast::NpyError);
}

}  // TEST_SUITE("npy")
