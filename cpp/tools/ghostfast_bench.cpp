// ghostfast-bench: load an engine file, run it, print its latency; no Python, no torch. Built statically for
// AArch64 so it runs from `adb shell` on a phone, like ncnn's benchncnn or TFLite's benchmark_model.
//
//   ghostfast-bench MODEL.gfe [--threads N] [--iters N] [--warmup N] [--isa NAME] [--input X.npy]
//                   [--output Y.npy] [--json]
//
// Every error is one line "ghostfast-bench: error: ..." on stderr and exit code 2, so the host driver can tell a
// bad file from a crash.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "ghostfast/engine.h"
#include "ghostfast/kernels.h"
#include "ghostfast/model_file.h"
#include "ghostfast/npy.h"
#include "ghostfast/thread_pool.h"
#include "ghostfast/timing.h"

namespace {

constexpr int kExitError = 2;
constexpr int64_t kMaxIters = 10000000;  // one int64 sample per iteration: 80 MB at most
constexpr unsigned kInputSeed = 0;

// A failure with a message meant for the user; main() prints it.
struct BenchError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Options {
    std::string model;
    int threads = 1;
    int64_t iters = 100;
    int64_t warmup = 10;
    std::string isa;
    std::string input;
    std::string output;
    bool json = false;
};

struct Stats {
    double min_ms, median_ms, mean_ms, p90_ms, max_ms;
};

std::string one_line(std::string s) {
    for (char& c : s)
        if (c == '\n' || c == '\r') c = ' ';
    return s;
}

// Percentiles interpolate linearly between order statistics, as numpy.percentile does (ghostfast.stats).
Stats summarize(std::vector<int64_t> ns) {
    std::sort(ns.begin(), ns.end());
    auto at = [&](double q) {
        const double pos = q * static_cast<double>(ns.size() - 1);
        const size_t lo = static_cast<size_t>(pos);
        const size_t hi = std::min(lo + 1, ns.size() - 1);
        return (static_cast<double>(ns[lo]) + (pos - static_cast<double>(lo)) *
                                                  static_cast<double>(ns[hi] - ns[lo])) / 1e6;
    };
    const double sum = std::accumulate(ns.begin(), ns.end(), 0.0);
    return {ns.front() / 1e6, at(0.5), sum / static_cast<double>(ns.size()) / 1e6, at(0.9), ns.back() / 1e6};
}

// The CPU as /proc/cpuinfo names it: "model name" on x86; on ARM Linux kernels often only "Hardware" and the
// implementer / part numbers (0x41 / 0xd05 is an Arm Cortex-A55).
std::string cpu_name() {
    std::ifstream in("/proc/cpuinfo");
    std::string line, model, hardware, implementer, part;
    auto value = [&](const char* key, std::string& out) {
        if (!out.empty() || line.compare(0, std::strlen(key), key) != 0) return;
        const size_t colon = line.find(':');
        if (colon == std::string::npos) return;
        const size_t start = line.find_first_not_of(" \t", colon + 1);
        out = start == std::string::npos ? "" : line.substr(start);
    };
    while (std::getline(in, line)) {
        value("model name", model);
        value("Hardware", hardware);
        value("CPU implementer", implementer);
        value("CPU part", part);
    }
    if (!model.empty()) return model;
    std::string out = hardware;
    if (!implementer.empty()) out += (out.empty() ? "" : ", ") + std::string("CPU implementer ") + implementer;
    if (!part.empty()) out += (out.empty() ? "" : ", ") + std::string("CPU part ") + part;
    return out;
}

std::string available_isas() {
    const ghostfast::KernelTable* tables[16];
    const int32_t n = ghostfast::available_kernel_tables(tables, 16);
    std::string out;
    for (int32_t i = 0; i < n; ++i) out += (i ? ", " : "") + std::string(tables[i]->isa);
    return out;
}

void check_isa(const std::string& isa) {
    if (isa.empty()) return;
    const bool known = isa == "generic" || isa == "avx2" || isa == "avx512" || isa == "neon";
    if (!known) throw BenchError("unknown --isa '" + isa + "' (choose generic, avx2, avx512 or neon)");
    if (ghostfast::kernels_for(isa.c_str()) == nullptr)
        throw BenchError("--isa " + isa + " is not available on this CPU or in this build (available: " +
                         available_isas() + ")");
}

std::string shape_str(const std::vector<int64_t>& shape) {
    std::string out = "(";
    for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
    return out + (shape.size() == 1 ? ",)" : ")");
}

// The input batch: the --input array, checked against the engine, or one image of seeded standard normal noise.
ghostfast::NpyArray make_input(const Options& opt, const ghostfast::Engine& engine) {
    const std::vector<int64_t> chw = {engine.in_c(), engine.in_h(), engine.in_w()};
    ghostfast::NpyArray x;
    if (opt.input.empty()) {
        x.shape = {1, chw[0], chw[1], chw[2]};
        x.data.resize(static_cast<size_t>(chw[0] * chw[1] * chw[2]));
        std::mt19937 gen(kInputSeed);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        for (float& v : x.data) v = normal(gen);
        return x;
    }
    x = ghostfast::load_npy(opt.input);
    const bool ok = x.shape.size() == 4 && x.shape[0] >= 1 && x.shape[0] <= engine.max_batch() &&
                    std::equal(chw.begin(), chw.end(), x.shape.begin() + 1);
    if (!ok)
        throw BenchError(opt.input + " has shape " + shape_str(x.shape) + "; " + opt.model + " takes (N, " +
                         std::to_string(chw[0]) + ", " + std::to_string(chw[1]) + ", " + std::to_string(chw[2]) +
                         ") with 1 <= N <= " + std::to_string(engine.max_batch()));
    return x;
}

void parse_args(int argc, char** argv, Options& opt) {
    CLI::App app("Runs a ghostfast engine file (written by Engine.save) and prints its latency.", "ghostfast-bench");
    app.add_option("MODEL", opt.model, "engine file (.gfe)")->required();
    app.add_option("--threads", opt.threads, "intra-op threads")
        ->capture_default_str()
        ->check(CLI::Range(1, ghostfast::kMaxThreads));
    app.add_option("--iters", opt.iters, "timed iterations")->capture_default_str()->check(CLI::Range(
        int64_t{1}, kMaxIters));
    app.add_option("--warmup", opt.warmup, "untimed iterations before timing")->capture_default_str()->check(
        CLI::Range(int64_t{0}, kMaxIters));
    app.add_option("--isa", opt.isa, "kernel table: generic, avx2, avx512 or neon (default: the best this CPU runs)");
    app.add_option("--input", opt.input,
                   "float32 C-order .npy of shape (N, C, H, W) (default: one image of seeded standard normal noise)");
    app.add_option("--output", opt.output, "write the logits of the input, shape (N, classes), as .npy");
    app.add_flag("--json", opt.json, "print one JSON object instead of the summary line");
    try {
        app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
        std::exit(app.exit(e));
    } catch (const CLI::ParseError& e) {
        throw BenchError(one_line(e.what()) + " (see --help)");
    }
}

int run(int argc, char** argv) {
    Options opt;
    parse_args(argc, argv, opt);
    check_isa(opt.isa);

    ghostfast::ModelFile file = ghostfast::load_model_file(opt.model);
    std::unique_ptr<ghostfast::Engine> engine;
    try {
        engine = std::make_unique<ghostfast::Engine>(std::move(file.program), opt.threads, opt.isa);
    } catch (const std::invalid_argument& e) {
        throw BenchError(opt.model + ": invalid program: " + one_line(e.what()));
    }
    const ghostfast::NpyArray x = make_input(opt, *engine);
    const auto n = static_cast<int32_t>(x.shape[0]);
    std::vector<float> logits(static_cast<size_t>(n) * static_cast<size_t>(engine->classes()));
    const std::vector<int64_t> samples =
        ghostfast::time_loop([&] { engine->run(x.data.data(), n, logits.data()); }, opt.iters, opt.warmup);
    const Stats s = summarize(samples);
    // Every timed run computed the same logits from the same input; the last one's are in `logits`.
    if (!opt.output.empty()) ghostfast::save_npy(opt.output, {n, engine->classes()}, logits.data());

    const std::string model = !file.meta.model.empty() ? file.meta.model
                                                        : std::filesystem::path(opt.model).stem().string();
    if (opt.json) {
        nlohmann::json j = {
            {"model", model}, {"file", opt.model}, {"isa", engine->isa()}, {"threads", engine->threads()},
            {"iters", opt.iters}, {"warmup", opt.warmup}, {"batch", n}, {"max_batch", engine->max_batch()},
            {"input_shape", x.shape}, {"classes", engine->classes()},
            {"min_ms", s.min_ms}, {"median_ms", s.median_ms}, {"mean_ms", s.mean_ms}, {"p90_ms", s.p90_ms},
            {"max_ms", s.max_ms}, {"cpu", cpu_name()},
            {"input", opt.input.empty() ? nlohmann::json(nullptr) : nlohmann::json(opt.input)},
            {"output", opt.output.empty() ? nlohmann::json(nullptr) : nlohmann::json(opt.output)},
        };
        // Paths and names need not be UTF-8; replace what is not rather than fail after the run.
        std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    } else {
        char line[512];
        std::snprintf(line, sizeof line,
                      "%s: isa %s, %d thread%s, batch %d: min %.3f / median %.3f / mean %.3f / p90 %.3f / max %.3f ms "
                      "over %lld iterations",
                      model.c_str(), engine->isa(), engine->threads(), engine->threads() == 1 ? "" : "s", n,
                      s.min_ms, s.median_ms, s.mean_ms, s.p90_ms, s.max_ms, static_cast<long long>(opt.iters));
        std::cout << line << '\n';
    }
    std::cout.flush();
    return std::cout ? 0 : kExitError;
}

}  // namespace

int main(int argc, char** argv) {
    try {
        return run(argc, argv);
    } catch (const std::bad_alloc&) {
        std::cerr << "ghostfast-bench: error: out of memory\n";
    } catch (const std::exception& e) {
        std::cerr << "ghostfast-bench: error: " << one_line(e.what()) << '\n';
    } catch (...) {
        std::cerr << "ghostfast-bench: error: unexpected failure\n";
    }
    return kExitError;
}
