// The engine-file reader: framing and header checks (each malformed file gets its own error), and whole saved
// engines run on every kernel table against torch's outputs. Fixtures: tests/fixtures/make_cpp_fixtures.py.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ghostfast/engine.h"
#include "ghostfast/kernels.h"
#include "ghostfast/model_file.h"
#include "ghostfast/npy.h"

namespace {

using Bytes = std::vector<uint8_t>;
using json = nlohmann::json;

std::string data_path(const std::string& name) { return std::string(GHOSTFAST_TEST_DATA_DIR) + "/" + name; }

Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in, "missing fixture " << path << " (run tests/fixtures/make_cpp_fixtures.py)");
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void put_le(Bytes& b, size_t at, uint64_t v, size_t n) {
    for (size_t i = 0; i < n; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * i));
}

// Rewrites the trailing CRC so that a deliberately edited file fails the check under test, not the checksum.
Bytes with_crc(Bytes b) {
    put_le(b, b.size() - 4, ghostfast::crc32(b.data(), b.size() - 4), 4);
    return b;
}

// A complete, correctly framed file around any header text and data section.
Bytes frame(const std::string& header, const Bytes& data, uint32_t version = 1) {
    Bytes b(20);
    std::memcpy(b.data(), "GHSTFAST", 8);
    put_le(b, 8, version, 4);
    put_le(b, 12, header.size(), 8);
    b.insert(b.end(), header.begin(), header.end());
    b.resize((b.size() + 63) / 64 * 64, 0);
    b.insert(b.end(), data.begin(), data.end());
    b.resize(b.size() + 4);
    return with_crc(b);
}

// A fixture's header (parsed) and data section, to edit and frame again.
struct Parts {
    json header;
    Bytes data;
};

Parts split(const Bytes& file) {
    uint64_t head_len = 0;
    for (int i = 0; i < 8; ++i) head_len |= static_cast<uint64_t>(file[12 + i]) << (8 * i);
    const size_t data_start = (20 + head_len + 63) / 64 * 64;
    Parts p;
    p.header = json::parse(file.begin() + 20, file.begin() + 20 + static_cast<long>(head_len));
    p.data.assign(file.begin() + static_cast<long>(data_start), file.end() - 4);
    return p;
}

const Bytes& tiny_file() {
    static const Bytes b = read_bytes(data_path("tiny.gfe"));
    return b;
}

// The message parse_model_file throws for `b` (a test fails if it throws nothing, or anything else).
std::string error_of(const Bytes& b) {
    try {
        ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
    } catch (const ghostfast::ModelFileError& e) {
        return e.what();
    }
    FAIL("the file was accepted");
    return "";
}

// The error for tiny.gfe's header after `edit`.
template <class Edit>
std::string error_after(Edit edit) {
    Parts p = split(tiny_file());
    edit(p.header);
    return error_of(frame(p.header.dump(), p.data));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

#define CHECK_ERROR(message, part)                                                                                 \
    do {                                                                                                           \
        const std::string msg_ = (message);                                                                        \
        CHECK_MESSAGE(contains(msg_, part), "error was: " << msg_);                                                \
        CHECK_MESSAGE(msg_.rfind("m.gfe: ", 0) == 0, "error does not name the file: " << msg_);                    \
        CHECK_MESSAGE(msg_.find('\n') == std::string::npos, "error is not one line: " << msg_);                    \
    } while (0)

std::vector<const ghostfast::KernelTable*> kernel_tables() {
    const ghostfast::KernelTable* t[16];
    const int32_t n = ghostfast::available_kernel_tables(t, 16);
    return std::vector<const ghostfast::KernelTable*>(t, t + n);
}

// max |got - ref| <= 1e-4 max |ref|, with a reference large enough for that to mean something.
void check_parity(const std::vector<float>& got, const std::vector<float>& ref, const std::string& what) {
    REQUIRE(got.size() == ref.size());
    double scale = 0, err = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
        scale = std::max(scale, std::fabs(static_cast<double>(ref[i])));
        err = std::max(err, std::fabs(static_cast<double>(got[i]) - ref[i]));
    }
    INFO(what << ": max |engine - torch| = " << err << ", max |torch| = " << scale);
    CHECK(scale > 1e-3);
    CHECK(err <= 1e-4 * scale);
}

}  // namespace

TEST_SUITE("model_file") {

TEST_CASE("crc32 is zlib's") {
    const std::string s = "123456789";
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    CHECK(ghostfast::crc32(p, 9) == 0xCBF43926u);  // the CRC-32 check value
    CHECK(ghostfast::crc32(p, 0) == 0u);
    CHECK(ghostfast::crc32(p + 4, 5, ghostfast::crc32(p, 4)) == 0xCBF43926u);
    const std::string zero(32, '\0');
    CHECK(ghostfast::crc32(reinterpret_cast<const uint8_t*>(zero.data()), 32) == 0x190A55ADu);
}

TEST_CASE("a file written by Python loads field for field") {
    const ghostfast::ModelFile f = ghostfast::load_model_file(data_path("tiny.gfe"));
    CHECK(f.version == 1);
    CHECK(f.meta.model == "tiny");
    CHECK(f.meta.input_shape == std::vector<int64_t>{3, 9, 9});
    const Parts parts = split(tiny_file());
    const json& p = parts.header["program"];
    const ghostfast::ProgramSpec& prog = f.program;
    CHECK(prog.max_batch == 2);
    CHECK(prog.input_value == p["input_value"].get<int>());
    CHECK(prog.output_value == p["output_value"].get<int>());
    REQUIRE(prog.buffers.size() == p["buffers"].size());
    for (size_t i = 0; i < prog.buffers.size(); ++i) {
        const ghostfast::BufferSpec& b = prog.buffers[i];
        CHECK(std::vector<int>{b.c, b.h, b.w} == p["buffers"][i].get<std::vector<int>>());
    }
    REQUIRE(prog.values.size() == p["values"].size());
    REQUIRE(prog.ops.size() == p["ops"].size());
    for (size_t i = 0; i < prog.ops.size(); ++i) {
        const json& op = p["ops"][i];
        CHECK(prog.ops[i].type == op[0].get<int>());
        CHECK(prog.ops[i].inputs == op[1].get<std::vector<int32_t>>());
        CHECK(prog.ops[i].output == op[2].get<int>());
        CHECK(prog.ops[i].params == op[3].get<std::vector<int32_t>>());
        CHECK(prog.ops[i].tensors == op[4].get<std::vector<int32_t>>());
        CHECK(prog.ops[i].name == op[5].get<std::string>());
    }
    REQUIRE(prog.tensors.size() == p["tensors"].size());
    for (size_t i = 0; i < prog.tensors.size(); ++i) {
        const json& spec = p["tensors"][i];
        CHECK(prog.tensors[i].shape == spec["shape"].get<std::vector<int64_t>>());
        REQUIRE(prog.tensors[i].size() * 4 == spec["nbytes"].get<size_t>());
        CHECK(std::memcmp(prog.tensors[i].values(), parts.data.data() + spec["offset"].get<size_t>(),
                          spec["nbytes"].get<size_t>()) == 0);
    }
}

TEST_CASE("the header's formatting does not matter: re-serialized JSON reads the same") {
    // nlohmann orders keys alphabetically and indents here; Python's writer keeps insertion order, compact.
    const Parts parts = split(tiny_file());
    const Bytes again = frame(parts.header.dump(2), parts.data);
    const ghostfast::ModelFile a = ghostfast::parse_model_file(tiny_file().data(), tiny_file().size(), "a");
    const ghostfast::ModelFile b = ghostfast::parse_model_file(again.data(), again.size(), "b");
    CHECK(a.program.ops.size() == b.program.ops.size());
    CHECK(a.program.tensors.size() == b.program.tensors.size());
    for (size_t i = 0; i < a.program.tensors.size(); ++i) CHECK(a.program.tensors[i].data == b.program.tensors[i].data);
    CHECK(a.meta.model == b.meta.model);
}

TEST_CASE("saved engines match torch on every kernel table") {
    for (const char* name : {"tiny", "ghost_blocks", "mobile_blocks", "shuffle_blocks"}) {
        const ghostfast::NpyArray x = ghostfast::load_npy(data_path(std::string(name) + "_input.npy"));
        const ghostfast::NpyArray ref = ghostfast::load_npy(data_path(std::string(name) + "_torch.npy"));
        REQUIRE(x.shape.size() == 4);
        const auto n = static_cast<int32_t>(x.shape[0]);
        for (const ghostfast::KernelTable* table : kernel_tables()) {
            for (int threads : {1, 2}) {
                // Threads change the schedule: Ghost modules stream whole at one thread, in slices at two.
                ghostfast::Engine engine(ghostfast::load_model_file(data_path(std::string(name) + ".gfe")).program,
                                         threads, table->isa);
                CHECK(std::string(engine.isa()) == table->isa);
                std::vector<float> out(ref.data.size());
                engine.run(x.data.data(), n, out.data());
                check_parity(out, ref.data, std::string(name) + " on " + table->isa + ", " +
                                                std::to_string(threads) + " threads, batch");
                // One image at a time gives the same rows.
                const size_t per_in = x.data.size() / n, per_out = out.size() / n;
                for (int32_t i = 0; i < n; ++i)
                    engine.run(x.data.data() + i * per_in, 1, out.data() + i * per_out);
                check_parity(out, ref.data, std::string(name) + " on " + table->isa + ", single images");
            }
        }
    }
}

TEST_CASE("unreadable files") {
    auto load_error = [](const std::string& path) -> std::string {
        try {
            ghostfast::load_model_file(path);
        } catch (const ghostfast::ModelFileError& e) {
            return e.what();
        }
        FAIL("accepted " << path);
        return "";
    };
    const std::string missing = data_path("no_such_file.gfe");
    CHECK(load_error(missing) == "cannot read model file " + missing + ": No such file or directory");
    CHECK(contains(load_error(GHOSTFAST_TEST_DATA_DIR), ": it is a directory"));
    CHECK(contains(load_error("/dev/zero"), ": it is not a regular file"));  // would never end
}

TEST_CASE("framing errors") {
    const Bytes& good = tiny_file();
    CHECK_ERROR(error_of(Bytes()), "not a ghostfast model file (only 0 bytes)");
    CHECK_ERROR(error_of(Bytes(good.begin(), good.begin() + 23)), "not a ghostfast model file (only 23 bytes)");
    Bytes b = good;
    b[0] = 'X';
    CHECK_ERROR(error_of(with_crc(b)), "bad magic");
    b = good;
    put_le(b, 8, 2, 4);
    CHECK_ERROR(error_of(with_crc(b)), "format version 2; this ghostfast reads version 1");
    b = good;
    b[b.size() / 2] ^= 0x10;
    CHECK_ERROR(error_of(b), "checksum mismatch");
    b = good;
    b[b.size() - 1] ^= 0x01;
    CHECK_ERROR(error_of(b), "checksum mismatch");
    CHECK_ERROR(error_of(Bytes(good.begin(), good.end() - 100)), "checksum mismatch");
    CHECK_ERROR(error_of(read_bytes(data_path("bad_truncated.gfe"))), "checksum mismatch");
    CHECK_ERROR(error_of(read_bytes(data_path("bad_checksum.gfe"))), "checksum mismatch");
    // Header lengths past the file, past the 64 MiB limit, or leaving no room for the padding before the CRC.
    for (uint64_t len : {uint64_t{good.size()}, uint64_t{65} << 20, ~uint64_t{0}, uint64_t{good.size() - 20 - 3}}) {
        b = good;
        put_le(b, 12, len, 8);
        CHECK_ERROR(error_of(with_crc(b)), "header length " + std::to_string(len) + " exceeds the file");
    }
}

TEST_CASE("unreadable or empty headers") {
    CHECK_ERROR(error_of(frame("{\"program\": ", {})), "unreadable header");
    CHECK_ERROR(error_of(frame("not json\n\x01", {})), "unreadable header");
    CHECK_ERROR(error_of(frame("{\"program\": {}, \"meta\": \"\xff\xfe\"}", {})), "unreadable header");  // UTF-8
    CHECK_ERROR(error_of(frame("", {})), "unreadable header");
    CHECK_ERROR(error_of(frame("[1, 2]", {})), "no program in the header");
    CHECK_ERROR(error_of(frame("{\"meta\": {}}", {})), "no program in the header");
    CHECK_ERROR(error_of(frame("{\"program\": []}", {})), "no program in the header");
    CHECK_ERROR(error_of(frame("{\"program\": {}}", {})), "tensors must be a list");
    CHECK_ERROR(error_of(frame(std::string(1000, '[') + std::string(1000, ']'), {})), "nests deeper than 32 levels");
}

TEST_CASE("tensor descriptions are checked against the data section") {
    const size_t data_size = split(tiny_file()).data.size();
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"] = json::object(); }), "tensors must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0] = 5; }), "tensor 0 description");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][1].erase("shape"); }),
                "tensor 1 shape must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["shape"] = json::array(); }),
                "tensor 0 has an invalid shape");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["shape"] = {1, 1, 1, 1, 1}; }),
                "tensor 0 has an invalid shape");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["shape"] = {8, -3, 3, 3}; }),
                "tensor 0 has an invalid shape");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["shape"] = {8, 3.0, 3, 3}; }),
                "tensor 0 shape must be an integer");
    CHECK_ERROR(error_after([&](json& h) { h["program"]["tensors"][0]["offset"] = data_size + 4; }),
                "tensor 0 offset must be an integer in [0, " + std::to_string(data_size) + "]");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["offset"] = -4; }), "tensor 0 offset");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["offset"] = "0"; }), "tensor 0 offset");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["offset"] = 2; }),
                "tensor 0 offset 2 is not a multiple of 4");
    // The last tensor moved to the end of the data section: its bytes would run past it.
    CHECK_ERROR(error_after([&](json& h) {
        json& t = h["program"]["tensors"].back();
        t["offset"] = data_size - 4;
    }), "size must be an integer in [0, 4]");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["nbytes"] = 4; }),
                "tensor 0 size 4 does not match its shape");
    CHECK_ERROR(error_after([](json& h) { h["program"]["tensors"][0]["shape"] = {8, 3, 3, 4}; }),
                "does not match its shape");
    // A product of dims that overflows 64 bits must not wrap around to the stored size.
    CHECK_ERROR(error_after([](json& h) {
        h["program"]["tensors"][0]["shape"] = {2147483647, 2147483647, 2147483647, 2147483647};
    }), "does not match its shape");
}

TEST_CASE("zero-size tensors are allowed, with any dims beside the zero") {
    Parts p = split(tiny_file());
    p.header["program"]["tensors"].push_back({{"shape", {2147483647, 0, 2147483647}}, {"offset", 0}, {"nbytes", 0}});
    const Bytes b = frame(p.header.dump(), p.data);
    const ghostfast::ModelFile f = ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
    CHECK(f.program.tensors.back().size() == 0);
}

TEST_CASE("program fields must be integers in range and lists of the right length") {
    CHECK_ERROR(error_after([](json& h) { h["program"]["max_batch"] = 0; }), "max_batch must be an integer in [1, 4096]");
    CHECK_ERROR(error_after([](json& h) { h["program"]["max_batch"] = 4097; }), "max_batch");
    CHECK_ERROR(error_after([](json& h) { h["program"]["max_batch"] = true; }), "max_batch must be an integer");
    CHECK_ERROR(error_after([](json& h) { h["program"]["max_batch"] = 2.0; }), "max_batch must be an integer");
    CHECK_ERROR(error_after([](json& h) { h["program"].erase("max_batch"); }), "got null");
    CHECK_ERROR(error_after([](json& h) { h["program"]["input_value"] = -1; }), "input_value must be an integer");
    CHECK_ERROR(error_after([](json& h) { h["program"]["output_value"] = 2147483648LL; }), "output_value");
    CHECK_ERROR(error_after([](json& h) { h["program"]["output_value"] = 18446744073709551615ULL; }),
                "output_value");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"] = "conv"; }), "ops must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0] = json::object(); }), "op 0 must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][1].erase(5); }), "op 1 must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][5] = 7; }), "op 0 must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][0] = -1; }), "op 0 type");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][1] = 3; }), "op 0 inputs must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][1] = std::vector<int>(4097, 0); }),
                "op 0 inputs must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][3][0] = 2147483648LL; }),
                "op 0 params must be an integer in [-2147483648, 2147483647], got 2147483648");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][4][0] = nullptr; }), "op 0 tensors");
    CHECK_ERROR(error_after([](json& h) { h["program"]["ops"][0][2] = "1"; }), "op 0 output");
    CHECK_ERROR(error_after([](json& h) { h["program"]["buffers"][0] = {1, 2}; }), "buffer must be a list of 3");
    CHECK_ERROR(error_after([](json& h) { h["program"]["buffers"] = nullptr; }), "buffers must be a list");
    CHECK_ERROR(error_after([](json& h) { h["program"]["values"][0] = {0, 0, 3, 0}; }), "value must be a list of 3");
    CHECK_ERROR(error_after([](json& h) { h["program"].erase("values"); }), "values must be a list");
    // A float too large for any integer type is still a float.
    Parts p = split(tiny_file());
    std::string text = p.header.dump();
    const std::string key = "\"max_batch\":2";
    REQUIRE(text.find(key) != std::string::npos);
    text.replace(text.find(key), key.size(), "\"max_batch\":99999999999999999999999");
    CHECK_ERROR(error_of(frame(text, p.data)), "max_batch must be an integer in [1, 4096], got ");
}

TEST_CASE("meta is optional and never rejects a sound program") {
    ghostfast::ModelFile f;
    Parts p = split(tiny_file());
    p.header.erase("meta");
    Bytes b = frame(p.header.dump(), p.data);
    f = ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
    CHECK(f.meta.model.empty());
    CHECK(f.meta.input_shape.empty());
    p.header["meta"] = {{"model", 3}, {"input_shape", {3, "a", 9}}};
    b = frame(p.header.dump(), p.data);
    f = ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
    CHECK(f.meta.model.empty());
    CHECK(f.meta.input_shape.empty());
    CHECK(f.program.ops.size() == split(tiny_file()).header["program"]["ops"].size());
}

TEST_CASE("op names keep their first 256 characters, not bytes") {
    Parts p = split(tiny_file());
    std::string name;
    for (int i = 0; i < 300; ++i) name += "\xc3\xa9";  // U+00E9, two bytes each
    p.header["program"]["ops"][0][5] = name;
    const Bytes b = frame(p.header.dump(), p.data);
    const ghostfast::ModelFile f = ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
    CHECK(f.program.ops[0].name == name.substr(0, 512));
}

TEST_CASE("a sound file with an unsound program: the engine's check rejects it") {
    ghostfast::ModelFile f = ghostfast::load_model_file(data_path("bad_program.gfe"));
    CHECK_THROWS_AS(ghostfast::Engine(std::move(f.program), 1, ""), std::invalid_argument);
}

TEST_CASE("flipped header bytes give a ModelFileError or an engine error, nothing else") {
    // Every byte of tiny.gfe's preamble and header, with a bit flipped and the checksum made to match again:
    // what the reader lets through must be a program the engine either accepts or rejects with invalid_argument.
    const Bytes& good = tiny_file();
    uint64_t head_len = 0;
    for (int i = 0; i < 8; ++i) head_len |= static_cast<uint64_t>(good[12 + i]) << (8 * i);
    int accepted = 0, rejected_by_reader = 0, rejected_by_engine = 0;
    for (size_t i = 0; i < 20 + head_len; ++i) {
        for (uint8_t bit : {uint8_t{0x01}, uint8_t{0x08}, uint8_t{0x40}}) {
            Bytes b = good;
            b[i] ^= bit;
            b = with_crc(b);
            try {
                ghostfast::ModelFile f = ghostfast::parse_model_file(b.data(), b.size(), "m.gfe");
                ghostfast::Engine engine(std::move(f.program), 1, "");
                ++accepted;
            } catch (const ghostfast::ModelFileError&) {
                ++rejected_by_reader;
            } catch (const std::invalid_argument&) {
                ++rejected_by_engine;
            }
        }
    }
    INFO(accepted << " accepted, " << rejected_by_reader << " rejected by the reader, " << rejected_by_engine
                  << " by the engine");
    CHECK(rejected_by_reader > 0);
    CHECK(rejected_by_engine > 0);
    CHECK(accepted > 0);  // e.g. flips inside op names and meta
}

}  // TEST_SUITE("model_file")

// Run by ctest after ghostfast-bench wrote its --output (cmake/cpp_tests.cmake sets the paths); skipped otherwise.
TEST_SUITE("bench_cli") {

TEST_CASE("ghostfast-bench --output matches torch" * doctest::skip()) {
    const char* got_path = std::getenv("GHOSTFAST_BENCH_OUTPUT");
    const char* ref_path = std::getenv("GHOSTFAST_BENCH_REFERENCE");
    REQUIRE_MESSAGE(got_path != nullptr, "set GHOSTFAST_BENCH_OUTPUT to ghostfast-bench's --output file");
    REQUIRE_MESSAGE(ref_path != nullptr, "set GHOSTFAST_BENCH_REFERENCE to torch's output");
    const ghostfast::NpyArray got = ghostfast::load_npy(got_path);
    const ghostfast::NpyArray ref = ghostfast::load_npy(ref_path);
    CHECK(got.shape == ref.shape);
    check_parity(got.data, ref.data, got_path);
}

}  // TEST_SUITE("bench_cli")
