// Engine construction: validation of an untrusted program, weight packing, arena planning.
#include "ghostfast/engine.h"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <thread>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>
#endif

#include "engine/engine_internal.h"
#include "engine/kernel_choice.h"

namespace ghostfast {

std::atomic<uint64_t> g_fork_generation{0};

namespace {

[[noreturn]] void fail(const std::string& what) { throw std::invalid_argument(what); }

std::string op_label(const OpSpec& op, size_t index) {
    return "op " + std::to_string(index) + (op.name.empty() ? "" : " (" + op.name + ")");
}

struct OpShape {
    size_t inputs_min, inputs_max, params, tensors;
};

OpShape op_shape(OpType t) {
    switch (t) {
        case OpType::kConv: return {1, 1, 4, 2};
        case OpType::kPointwise: return {1, 2, 2, 2};
        case OpType::kDepthwise: return {1, 1, 4, 2};
        case OpType::kGhost: return {1, 2, 5, 4};
        case OpType::kSqueezeExcite: return {1, 1, 2, 4};
        case OpType::kAdd: return {2, 2, 1, 0};
        case OpType::kMaxPool:
        case OpType::kAvgPool: return {1, 1, 3, 0};
        case OpType::kGlobalAvgPool: return {1, 1, 0, 0};
        case OpType::kChannelShuffle: return {1, 1, 1, 0};
        case OpType::kCopy: return {1, 1, 0, 0};
        case OpType::kActivation: return {1, 1, 1, 0};
    }
    return {0, 0, 0, 0};
}

bool known_type(int32_t t) { return t >= 1 && t <= 12; }

int32_t conv_out(int32_t in, int32_t k, int32_t s, int32_t p) {
    const int64_t span = static_cast<int64_t>(in) + 2 * p - k;
    return span < 0 ? 0 : static_cast<int32_t>(span / s + 1);
}

// Whether op i + 1 is the only reader of op i's output buffer, through its input 0, and op i its only writer
// (and the value the whole buffer, neither the model's input nor its output): what a streamed pair and a folded
// shuffle need, since op i's output then never exists as a plane.
bool next_op_is_sole_reader(const ProgramSpec& p, size_t i) {
    const ValueSpec& v = p.values[p.ops[i].output];
    if (p.ops[i + 1].inputs[0] != p.ops[i].output || v.c_offset != 0 || v.c != p.buffers[v.buffer].c) return false;
    if (p.values[p.output_value].buffer == v.buffer || p.values[p.input_value].buffer == v.buffer) return false;
    for (size_t j = 0; j < p.ops.size(); ++j) {
        if (j != i && p.values[p.ops[j].output].buffer == v.buffer) return false;
        for (size_t s = 0; s < p.ops[j].inputs.size(); ++s)
            if (p.values[p.ops[j].inputs[s]].buffer == v.buffer && !(j == i + 1 && s == 0)) return false;
    }
    return true;
}

const KernelTable* checked_kernels(const std::string& isa) {
    const KernelTable* k = isa.empty() ? &best_kernels() : kernels_for(isa.c_str());
    if (k == nullptr) fail("kernel table '" + isa + "' is not available on this CPU or in this build");
    return k;
}

// Byte counts of a memory plan, saturating instead of wrapping: a hostile file's sizes then compare as huge.
uint64_t add_bytes(uint64_t a, uint64_t b) {
    return a > std::numeric_limits<uint64_t>::max() - b ? std::numeric_limits<uint64_t>::max() : a + b;
}
uint64_t mul_bytes(uint64_t a, uint64_t b) {
    return b != 0 && a > std::numeric_limits<uint64_t>::max() / b ? std::numeric_limits<uint64_t>::max() : a * b;
}

// What this process can still allocate, in bytes, and where that bound comes from; 0 when unknown. The
// smallest of: free memory (Linux: MemAvailable + SwapFree; elsewhere the physical memory), the cgroup's
// memory limit less its usage, and RLIMIT_AS / RLIMIT_DATA less what the process already uses.
struct Available {
    uint64_t bytes = 0;
    std::string source;
    void bound(uint64_t b, const std::string& from) {
        if (bytes == 0 || b < bytes) bytes = b, source = from;
    }
};

#if defined(__linux__)
uint64_t meminfo_kib(const std::string& text, const char* key) {
    const size_t at = text.find(key);
    if (at == std::string::npos) return 0;
    return std::strtoull(text.c_str() + at + std::strlen(key), nullptr, 10);
}

std::string read_text(const std::string& path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// memory.max (v2) or memory.limit_in_bytes (v1) less the usage, for the cgroup /proc/self/cgroup names.
void cgroup_bound(Available& a) {
    std::istringstream lines(read_text("/proc/self/cgroup"));
    for (std::string line; std::getline(lines, line);) {
        const size_t c1 = line.find(':'), c2 = line.find(':', c1 + 1);
        if (c1 == std::string::npos || c2 == std::string::npos) continue;
        const std::string controllers = line.substr(c1 + 1, c2 - c1 - 1), path = line.substr(c2 + 1);
        std::string limit_file, usage_file;
        if (controllers.empty()) {
            limit_file = "/sys/fs/cgroup" + path + "/memory.max", usage_file = "/sys/fs/cgroup" + path + "/memory.current";
        } else if (("," + controllers + ",").find(",memory,") != std::string::npos) {
            limit_file = "/sys/fs/cgroup/memory" + path + "/memory.limit_in_bytes";
            usage_file = "/sys/fs/cgroup/memory" + path + "/memory.usage_in_bytes";
        } else {
            continue;
        }
        const std::string limit = read_text(limit_file);
        if (limit.empty() || limit[0] < '0' || limit[0] > '9') continue;  // "max", or not readable
        const uint64_t lim = std::strtoull(limit.c_str(), nullptr, 10);
        const uint64_t used = std::strtoull(read_text(usage_file).c_str(), nullptr, 10);
        if (lim < (uint64_t{1} << 62)) a.bound(lim > used ? lim - used : 0, "the cgroup's memory limit less its usage");
    }
}
#endif

Available available_memory() {
    Available a;
#if defined(__linux__)
    const std::string meminfo = read_text("/proc/meminfo");
    if (meminfo.find("MemAvailable:") != std::string::npos)
        a.bound(mul_bytes(add_bytes(meminfo_kib(meminfo, "MemAvailable:"), meminfo_kib(meminfo, "SwapFree:")), 1024),
                "MemAvailable + SwapFree in /proc/meminfo");
    cgroup_bound(a);
    // statm: total program size, resident, shared, text, lib, data + stack (pages).
    uint64_t statm[7] = {};
    std::istringstream fields(read_text("/proc/self/statm"));
    for (auto& f : statm) fields >> f;
    const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
    const uint64_t vm = mul_bytes(statm[0], page), data = mul_bytes(statm[5], page);
#elif defined(__unix__) || defined(__APPLE__)
    const long pages = sysconf(_SC_PHYS_PAGES), page_size = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page_size > 0)
        a.bound(mul_bytes(static_cast<uint64_t>(pages), static_cast<uint64_t>(page_size)), "the physical memory");
    const uint64_t vm = 0, data = 0;  // (no cheap way to read the current usage: the limits count in full)
#endif
#if defined(__unix__) || defined(__APPLE__)
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
        a.bound(r.rlim_cur > vm ? r.rlim_cur - vm : 0, "the address-space limit RLIMIT_AS less the address space in use");
    if (getrlimit(RLIMIT_DATA, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
        a.bound(r.rlim_cur > data ? r.rlim_cur - data : 0, "the data-segment limit RLIMIT_DATA less the data in use");
#endif
    return a;
}

// Serializes adopt_after_fork among a child's threads; the fork handler frees it, since a parent thread may have
// held it when the process forked.
std::atomic<bool> g_adopt_lock{false};

// The current fork generation; the first call registers the handler that bumps it in every forked child.
uint64_t fork_generation() {
#if defined(__unix__) || defined(__APPLE__)
    static const bool registered = [] {
        return pthread_atfork(nullptr, nullptr, [] {
                   g_fork_generation.fetch_add(1, std::memory_order_relaxed);
                   g_adopt_lock.store(false, std::memory_order_relaxed);
               }) == 0;
    }();
    (void)registered;
#endif
    return g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace

const char* op_type_name(OpType t) {
    switch (t) {
        case OpType::kConv: return "conv";
        case OpType::kPointwise: return "pointwise";
        case OpType::kDepthwise: return "depthwise";
        case OpType::kGhost: return "ghost";
        case OpType::kSqueezeExcite: return "squeeze_excite";
        case OpType::kAdd: return "add";
        case OpType::kMaxPool: return "max_pool";
        case OpType::kAvgPool: return "avg_pool";
        case OpType::kGlobalAvgPool: return "global_avg_pool";
        case OpType::kChannelShuffle: return "channel_shuffle";
        case OpType::kCopy: return "copy";
        case OpType::kActivation: return "activation";
    }
    return "?";
}

AlignedFloats::AlignedFloats(size_t n) : size_(n) {
    if (n == 0) return;
    const size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
    data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(data_, 0, bytes);
}

AlignedFloats::~AlignedFloats() { std::free(data_); }

AlignedFloats::AlignedFloats(AlignedFloats&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
}

AlignedFloats& AlignedFloats::operator=(AlignedFloats&& o) noexcept {
    if (this != &o) {
        std::free(data_);
        data_ = o.data_;
        size_ = o.size_;
        o.data_ = nullptr;
        o.size_ = 0;
    }
    return *this;
}

Engine::Engine(ProgramSpec program, int threads, const std::string& isa, const std::vector<std::string>& op_isas)
    : program_(std::move(program)),
      kernels_(checked_kernels(isa)),
      mutex_(std::make_unique<std::mutex>()),
      fork_generation_(fork_generation()) {
    // Arguments and the program first, then what the program will need against what the machine has: an invalid
    // file starts no thread, and one that asks for too much allocates nothing.
    checked_thread_count(threads);
    validate();
    pool_ = std::make_unique<ThreadPool>(threads);
    plan_folds();
    plan_streaming();
    plan_arena();
    check_memory();
    pack_weights(choose_kernels(op_isas));
    allocate();
    int64_t readers = 0;
    for (size_t i = 0; i < program_.ops.size(); ++i)
        for (int32_t v : program_.ops[i].inputs)
            if (v == program_.input_value) {
                ++readers;
                if (program_.ops[i].type == static_cast<int32_t>(OpType::kConv)) planar_input_op_ = static_cast<int64_t>(i);
            }
    // (an output that is the input itself is copied out of the arena, so the input must be converted into it)
    if (readers != 1 || program_.output_value == program_.input_value) planar_input_op_ = -1;
}

Engine::~Engine() {
    // In a forked child that never ran this engine, the mutex may be locked and the pool's workers do not exist:
    // see adopt_after_fork.
    if (fork_generation_.load(std::memory_order_relaxed) != fork_generation()) {
        (void)mutex_.release();
        (void)pool_.release();
    }
    std::free(arena_);
}

// The first run in a forked child. fork() copies only the calling thread: the inherited mutex may be locked by a
// thread that does not exist here (so locking it blocks forever), and the pool's workers are gone (so joining or
// notifying them is undefined). Neither is touched: both are leaked, a few hundred bytes per engine per fork,
// and replaced by a fresh mutex and pool. Slice-edge arrival counts may be odd from a run cut off by the fork.
void Engine::adopt_after_fork() {
    while (g_adopt_lock.exchange(true, std::memory_order_acquire)) std::this_thread::yield();
    struct Unlock {
        ~Unlock() { g_adopt_lock.store(false, std::memory_order_release); }
    } unlock;
    const uint64_t generation = fork_generation();
    if (fork_generation_.load(std::memory_order_acquire) == generation) return;  // another thread adopted it
    auto pool = std::make_unique<ThreadPool>(pool_->threads());
    auto mutex = std::make_unique<std::mutex>();
    (void)pool_.release();
    (void)mutex_.release();
    pool_ = std::move(pool);
    mutex_ = std::move(mutex);
    if (slice_edges_)
        for (size_t i = 0; i < static_cast<size_t>(program_.max_batch) * kMaxGhostSlices; ++i)
            slice_edges_[i].arrivals.store(0, std::memory_order_relaxed);
    fork_generation_.store(generation, std::memory_order_release);
}

void Engine::check_memory() const {
    const ProgramSpec& p = program_;
    const uint64_t arena = add_bytes(mul_bytes(std::max<uint64_t>(16, arena_floats_), sizeof(float)), 64);
    uint64_t other = mul_bytes(add_bytes(scratch_floats_, 16), sizeof(float));
    // (before the tables are chosen: the larger of the two packings an op may get)
    const KernelTable* narrow = half_width_kernels(*kernels_);
    for (const OpSpec& op : p.ops) {
        const size_t floats = std::max(packed_floats(op, *kernels_), narrow ? packed_floats(op, *narrow) : 0);
        other = add_bytes(other, add_bytes(mul_bytes(floats, sizeof(float)), 64));
    }
    if (pool_->threads() > 1)
        other = add_bytes(other, mul_bytes(uint64_t(p.max_batch) * kMaxGhostSlices, sizeof(SliceEdge)));
    const uint64_t total = add_bytes(arena, other);
    auto describe = [&](uint64_t limit, const std::string& what) {
        return "the model needs " + std::to_string(arena) + " bytes of activation memory (max_batch " +
               std::to_string(p.max_batch) + ", " + std::to_string(p.buffers.size()) + " buffers) and " +
               std::to_string(other) + " bytes of packed weights and scratch, " + std::to_string(total) +
               " in all; " + what + " " + std::to_string(limit) + " bytes";
    };
    if (total > std::numeric_limits<size_t>::max()) fail(describe(std::numeric_limits<size_t>::max(), "this build can address"));
    const Available avail = available_memory();
    if (avail.bytes != 0 && total > avail.bytes)
        fail(describe(avail.bytes, "this machine has") + " available (" + avail.source +
             "). A smaller max_batch (compile(..., batch=)) or input size needs less.");
}

int32_t Engine::in_c() const { return program_.values[program_.input_value].c; }
int32_t Engine::in_h() const { return program_.buffers[program_.values[program_.input_value].buffer].h; }
int32_t Engine::in_w() const { return program_.buffers[program_.values[program_.input_value].buffer].w; }
int32_t Engine::classes() const { return program_.values[program_.output_value].c; }

void Engine::validate() {
    const ProgramSpec& p = program_;
    if (p.max_batch < 1 || p.max_batch > 4096) fail("max_batch must be in [1, 4096]");
    if (p.buffers.empty() || p.values.empty() || p.ops.empty()) fail("program has no buffers, values or ops");
    if (p.buffers.size() > 100000 || p.values.size() > 100000 || p.ops.size() > 100000 || p.tensors.size() > 100000)
        fail("program is implausibly large");
    int64_t total_floats = 0;
    for (size_t i = 0; i < p.buffers.size(); ++i) {
        const BufferSpec& b = p.buffers[i];
        if (b.c < 1 || b.h < 1 || b.w < 1 || b.c > (1 << 20) || b.h > (1 << 15) || b.w > (1 << 15))
            fail("buffer " + std::to_string(i) + " has invalid dimensions");
        total_floats += static_cast<int64_t>(p.max_batch) * b.c * b.h * b.w;
        if (total_floats > (int64_t{1} << 34)) fail("activation buffers exceed 64 GiB");
    }
    for (size_t i = 0; i < p.values.size(); ++i) {
        const ValueSpec& v = p.values[i];
        if (v.buffer < 0 || static_cast<size_t>(v.buffer) >= p.buffers.size())
            fail("value " + std::to_string(i) + " refers to a missing buffer");
        if (v.c < 1 || v.c_offset < 0 || int64_t{v.c_offset} + v.c > p.buffers[v.buffer].c)
            fail("value " + std::to_string(i) + " is not a channel slice of its buffer");
    }
    for (size_t i = 0; i < p.tensors.size(); ++i) {
        const TensorSpec& t = p.tensors[i];
        if (t.shape.empty() || t.shape.size() > 4) fail("tensor " + std::to_string(i) + " has an invalid rank");
        int64_t n = 1;
        for (int64_t d : t.shape) {
            if (d < 0 || d > (int64_t{1} << 31)) fail("tensor " + std::to_string(i) + " has an invalid shape");
            n *= d;
            if (n > (int64_t{1} << 32)) fail("tensor " + std::to_string(i) + " is too large");
        }
        if (static_cast<size_t>(n) != t.size())
            fail("tensor " + std::to_string(i) + " holds " + std::to_string(t.size()) +
                 " floats, its shape needs " + std::to_string(n));
    }
    auto check_value = [&](int32_t id, const std::string& where) {
        if (id < 0 || static_cast<size_t>(id) >= p.values.size()) fail(where + " refers to a missing value");
    };
    check_value(p.input_value, "the input");
    check_value(p.output_value, "the output");
    const BufferSpec& ob = p.buffers[p.values[p.output_value].buffer];
    if (ob.h != 1 || ob.w != 1) fail("the output value must be (classes, 1, 1)");

    // What each channel of each buffer holds so far: nothing, the program input, or an op's output. An op may read
    // the input only through the input value itself: the NCHW input is converted into the arena through that
    // value alone, or not at all when a stem conv reads the caller's array in place (planar_input_op_), so
    // another value over the same channels would read zeros. Other values may overlap freely (producers write
    // channel slices of a concatenated buffer, chunks and splits read slices of it, SE and activations work in
    // place), as long as every channel an op reads was written by an earlier op.
    enum : char { kUnwritten = 0, kInput = 1, kWritten = 2 };
    std::vector<std::vector<char>> state(p.buffers.size());
    for (size_t b = 0; b < p.buffers.size(); ++b) state[b].assign(p.buffers[b].c, kUnwritten);
    auto channels = [&](int32_t id) {
        const ValueSpec& v = p.values[id];
        return "value " + std::to_string(id) + " (buffer " + std::to_string(v.buffer) + ", channels [" +
               std::to_string(v.c_offset) + ", " + std::to_string(v.c_offset + v.c) + "))";
    };
    auto holds = [&](int32_t id, char what) {
        const ValueSpec& v = p.values[id];
        return std::any_of(state[v.buffer].begin() + v.c_offset, state[v.buffer].begin() + v.c_offset + v.c,
                           [&](char c) { return c == what; });
    };
    auto overlaps = [&](int32_t a, int32_t b) {
        const ValueSpec& x = p.values[a];
        const ValueSpec& y = p.values[b];
        return x.buffer == y.buffer && x.c_offset < y.c_offset + y.c && y.c_offset < x.c_offset + x.c;
    };
    auto check_readable = [&](int32_t id, const std::string& who) {
        if (id == p.input_value) return;
        if (holds(id, kInput))
            fail(who + " reads " + channels(id) + ", which covers channels of the program input (value " +
                 std::to_string(p.input_value) + ") but is not the input value: only the input value may read them");
        if (holds(id, kUnwritten)) fail(who + " reads " + channels(id) + ", but no earlier op wrote all of those channels");
    };
    {
        const ValueSpec& in = p.values[p.input_value];
        std::fill(state[in.buffer].begin() + in.c_offset, state[in.buffer].begin() + in.c_offset + in.c, kInput);
    }

    for (size_t oi = 0; oi < p.ops.size(); ++oi) {
        const OpSpec& op = p.ops[oi];
        const std::string label = op_label(op, oi);
        if (!known_type(op.type)) fail(label + " has unknown type " + std::to_string(op.type));
        const OpType type = static_cast<OpType>(op.type);
        const OpShape shape = op_shape(type);
        if (op.inputs.size() < shape.inputs_min || op.inputs.size() > shape.inputs_max)
            fail(label + " has the wrong number of inputs");
        if (op.params.size() != shape.params) fail(label + " has the wrong number of parameters");
        if (op.tensors.size() != shape.tensors) fail(label + " has the wrong number of weight tensors");
        for (int32_t id : op.inputs) check_value(id, label);
        check_value(op.output, label);
        for (int32_t t : op.tensors)
            if (t < 0 || static_cast<size_t>(t) >= p.tensors.size()) fail(label + " refers to a missing tensor");
        for (int32_t id : op.inputs) check_readable(id, label);
        if (overlaps(op.output, p.input_value) &&
            (op.output != p.input_value ||
             std::find(op.inputs.begin(), op.inputs.end(), p.input_value) == op.inputs.end()))
            fail(label + " writes " + channels(op.output) + " over the program input (value " +
                 std::to_string(p.input_value) + "); only an in-place op on the input value may");

        auto dims = [&](int32_t id) {
            const ValueSpec& v = p.values[id];
            const BufferSpec& b = p.buffers[v.buffer];
            return std::array<int32_t, 3>{v.c, b.h, b.w};
        };
        auto tensor_is = [&](size_t slot, std::initializer_list<int64_t> want) {
            const TensorSpec& t = p.tensors[op.tensors[slot]];
            if (!std::equal(t.shape.begin(), t.shape.end(), want.begin(), want.end()))
                fail(label + ": weight tensor " + std::to_string(slot) + " has the wrong shape");
        };
        auto check_act = [&](int32_t a) {
            if (a < 0 || a >= kActCount) fail(label + " has an unknown activation " + std::to_string(a));
        };
        auto check_window = [&](int32_t k, int32_t s, int32_t pad) {
            if (k < 1 || k > 15 || s < 1 || s > 8 || pad < 0 || pad > k)
                fail(label + " has an invalid kernel / stride / padding");
        };
        const auto in = dims(op.inputs[0]);
        const auto out = dims(op.output);
        auto same_dims = [&](const std::array<int32_t, 3>& a, const std::array<int32_t, 3>& b, const char* what) {
            if (a != b) fail(label + ": " + what + " dimensions do not match");
        };
        auto spatial = [&](int32_t k, int32_t s, int32_t pad) {
            if (out[1] != conv_out(in[1], k, s, pad) || out[2] != conv_out(in[2], k, s, pad) || out[1] < 1 ||
                out[2] < 1)
                fail(label + ": output size does not follow from input size, kernel, stride and padding");
        };
        switch (type) {
            case OpType::kConv: {
                const int32_t k = op.params[0], s = op.params[1], pad = op.params[2];
                check_window(k, s, pad);
                check_act(op.params[3]);
                spatial(k, s, pad);
                tensor_is(0, {out[0], in[0], k, k});
                tensor_is(1, {out[0]});
                break;
            }
            case OpType::kPointwise: {
                const int32_t g = op.params[0];
                if (g < 1 || in[0] % g != 0 || out[0] % g != 0) fail(label + ": groups must divide channels");
                check_act(op.params[1]);
                if (in[1] != out[1] || in[2] != out[2]) fail(label + ": 1x1 conv must keep the spatial size");
                tensor_is(0, {out[0], in[0] / g});
                tensor_is(1, {out[0]});
                if (op.inputs.size() == 2) same_dims(dims(op.inputs[1]), out, "residual");
                break;
            }
            case OpType::kDepthwise: {
                const int32_t k = op.params[0], s = op.params[1], pad = op.params[2];
                check_window(k, s, pad);
                check_act(op.params[3]);
                if (in[0] != out[0]) fail(label + ": depthwise conv must keep the channel count");
                spatial(k, s, pad);
                tensor_is(0, {in[0], k, k});
                tensor_is(1, {in[0]});
                break;
            }
            case OpType::kGhost: {
                const int32_t init = op.params[0], cheap = op.params[1], k = op.params[2];
                if (init < 1 || cheap < 0 || cheap > init || out[0] != int64_t{init} + cheap)
                    fail(label + ": ghost channel split is inconsistent");
                if (k < 1 || k > 15 || k % 2 == 0) fail(label + ": cheap kernel must be odd");
                check_act(op.params[3]);
                check_act(op.params[4]);
                if (in[1] != out[1] || in[2] != out[2]) fail(label + ": ghost module must keep the spatial size");
                tensor_is(0, {init, in[0]});
                tensor_is(1, {init});
                tensor_is(2, {cheap, k, k});
                tensor_is(3, {cheap});
                if (op.inputs.size() == 2) same_dims(dims(op.inputs[1]), out, "residual");
                break;
            }
            case OpType::kSqueezeExcite: {
                check_act(op.params[0]);
                check_act(op.params[1]);
                same_dims(in, out, "output");
                const TensorSpec& w1 = p.tensors[op.tensors[0]];
                if (w1.shape.size() != 2 || w1.shape[0] < 1) fail(label + ": SE reduce weight must be (rd, c)");
                const int64_t rd = w1.shape[0];
                tensor_is(0, {rd, in[0]});
                tensor_is(1, {rd});
                tensor_is(2, {in[0], rd});
                tensor_is(3, {in[0]});
                break;
            }
            case OpType::kAdd:
                check_act(op.params[0]);
                same_dims(in, out, "output");
                same_dims(dims(op.inputs[1]), out, "second input");
                break;
            case OpType::kMaxPool:
            case OpType::kAvgPool:
                check_window(op.params[0], op.params[1], op.params[2]);
                if (op.params[2] * 2 > op.params[0]) fail(label + ": pooling padding exceeds half the window");
                if (in[0] != out[0]) fail(label + ": pooling must keep the channel count");
                spatial(op.params[0], op.params[1], op.params[2]);
                break;
            case OpType::kGlobalAvgPool:
                if (out[0] != in[0] || out[1] != 1 || out[2] != 1) fail(label + ": output must be (c, 1, 1)");
                break;
            case OpType::kChannelShuffle:
                if (op.params[0] < 1 || in[0] % op.params[0] != 0) fail(label + ": groups must divide channels");
                same_dims(in, out, "output");
                break;
            case OpType::kCopy:
                same_dims(in, out, "output");
                break;
            case OpType::kActivation:
                check_act(op.params[0]);
                same_dims(in, out, "output");
                break;
        }
        // Writes may not overlap reads, except the element-wise ops that may work exactly in place.
        const ValueSpec& o = p.values[op.output];
        for (int32_t id : op.inputs) {
            const ValueSpec& v = p.values[id];
            if (v.buffer != o.buffer) continue;
            const bool overlap = v.c_offset < o.c_offset + o.c && o.c_offset < v.c_offset + v.c;
            if (!overlap) continue;
            const bool exact = v.c_offset == o.c_offset && v.c == o.c;
            const bool in_place_ok = type == OpType::kSqueezeExcite || type == OpType::kActivation ||
                                     type == OpType::kAdd;
            if (!(exact && in_place_ok)) fail(label + " writes over one of its own inputs");
        }
        if (op.output != p.input_value) {  // (an in-place op on the input leaves the input's channels its own)
            const ValueSpec& o = p.values[op.output];
            std::fill(state[o.buffer].begin() + o.c_offset, state[o.buffer].begin() + o.c_offset + o.c, kWritten);
        }
    }
    check_readable(p.output_value, "the program output");
}

bool ghost_fuses_residual(const OpSpec& op) {
    return static_cast<OpType>(op.type) == OpType::kGhost && op.inputs.size() == 2 && op.params[1] > 0 &&
           static_cast<Act>(op.params[3]) == Act::kNone && static_cast<Act>(op.params[4]) == Act::kNone;
}

int32_t ghost_row_slices(const OpSpec& ghost, int32_t h, int threads) {
    if (threads < 2 || (ghost.inputs.size() == 2 && !ghost_fuses_residual(ghost))) return 0;
    const int32_t per_thread = std::min(h / (threads * kGhostSliceRows), kGhostSlicesPerThread);
    if (per_thread < kGhostSlicesPerThread) return 0;
    const int32_t slices = std::min(per_thread * threads, kMaxGhostSlices);
    return h / slices > ghost.params[2] / 2 * 2 ? slices : 0;  // every slice has rows besides its edge rows
}

int32_t ghost_stream_slices(int32_t out_h, int threads) {
    if (threads < 2 || out_h < kStreamSliceMinRows) return 0;
    return std::min({out_h / kStreamOutRows, kStreamSlicesPerThread * threads, kMaxGhostSlices});
}

// The table of each op: see the constructor's op_isas.
std::vector<const KernelTable*> Engine::choose_kernels(const std::vector<std::string>& op_isas) {
    const std::vector<OpSpec>& ops = program_.ops;
    std::vector<const KernelTable*> tables(ops.size(), kernels_);
    if (!op_isas.empty()) {
        if (op_isas.size() != ops.size())
            fail("op_isas has " + std::to_string(op_isas.size()) + " entries for " + std::to_string(ops.size()) + " ops");
        for (size_t i = 0; i < ops.size(); ++i)
            if (!op_isas[i].empty()) tables[i] = checked_kernels(op_isas[i]);
        return tables;
    }
    const KernelTable* narrow = half_width_kernels(*kernels_);
    const char* choice = std::getenv("GHOSTFAST_KERNEL_CHOICE");
    if (!narrow || (choice && std::strcmp(choice, "fixed") == 0)) return tables;
    for (size_t i = 0; i < ops.size(); ++i)
        if (op_has_table_choice(ops[i])) tables[i] = faster_table(program_, ops[i], *kernels_, *narrow);
    return tables;
}

const char* Engine::op_isa(size_t i) const {
    if (i >= prepared_.size()) fail("op index " + std::to_string(i) + " out of range");
    return prepared_[i]->kernels->isa;
}

void Engine::pack_weights(const std::vector<const KernelTable*>& op_kernels) {
    const ProgramSpec& p = program_;
    prepared_.clear();
    packed_floats_ = 0;
    auto tensor = [&](const OpSpec& op, size_t slot) { return p.tensors[op.tensors[slot]].values(); };
    const KernelTable* kt = kernels_;  // the table of the op being packed
    auto pack_pw = [&](const float* w, const float* b, int32_t k, int32_t n) {
        AlignedFloats out(kt->pointwise_packed_size(k, n));
        kt->pack_pointwise(w, b, k, n, out.data());
        packed_floats_ += out.size();
        return out;
    };
    auto pack_dw = [&](const float* w, const float* b, int32_t c, int32_t k) {
        AlignedFloats out(kt->depthwise_packed_size(c, k));
        kt->pack_depthwise(w, b, c, k, out.data());
        packed_floats_ += out.size();
        return out;
    };
    // Each weight tensor is released once the last op using it is packed: the engine keeps only the packed
    // copy, and the transient peak stays near one copy of the weights rather than two.
    std::vector<int32_t> uses(p.tensors.size(), 0);
    for (const OpSpec& op : p.ops)
        for (int32_t t : op.tensors) ++uses[static_cast<size_t>(t)];
    for (size_t i = 0; i < p.ops.size(); ++i) {
        const OpSpec& op = p.ops[i];
        auto prep = std::make_unique<Prepared>();
        prep->type = static_cast<OpType>(op.type);
        prep->kernels = kt = op_kernels[i];
        const int32_t in_c = p.values[op.inputs[0]].c;
        const int32_t out_c = p.values[op.output].c;
        switch (prep->type) {
            case OpType::kConv: {
                const int32_t k = op.params[0];
                AlignedFloats packed(kt->conv_packed_size(in_c, out_c, k));
                kt->pack_conv(tensor(op, 0), tensor(op, 1), in_c, out_c, k, packed.data());
                packed_floats_ += packed.size();
                prep->packed.push_back(std::move(packed));
                break;
            }
            case OpType::kPointwise: {
                const int32_t g = op.params[0], kg = in_c / g, ng = out_c / g;
                for (int32_t gi = 0; gi < g; ++gi)
                    prep->packed.push_back(pack_pw(tensor(op, 0) + static_cast<size_t>(gi) * ng * kg,
                                                   tensor(op, 1) + static_cast<size_t>(gi) * ng, kg, ng));
                break;
            }
            case OpType::kDepthwise:
                prep->packed.push_back(pack_dw(tensor(op, 0), tensor(op, 1), in_c, op.params[0]));
                break;
            case OpType::kGhost:  // (its scratch: plan_streaming)
                prep->packed.push_back(pack_pw(tensor(op, 0), tensor(op, 1), in_c, op.params[0]));
                if (op.params[1] > 0) prep->packed.push_back(pack_dw(tensor(op, 2), tensor(op, 3), op.params[1], op.params[2]));
                break;
            case OpType::kSqueezeExcite: {
                const int32_t rd = static_cast<int32_t>(p.tensors[op.tensors[0]].shape[0]);
                prep->packed.push_back(pack_pw(tensor(op, 0), tensor(op, 1), in_c, rd));
                prep->packed.push_back(pack_pw(tensor(op, 2), tensor(op, 3), rd, in_c));  // (scratch: plan_streaming)
                break;
            }
            default:
                break;
        }
        prepared_.push_back(std::move(prep));
        for (int32_t t : op.tensors)
            if (--uses[static_cast<size_t>(t)] == 0) {
                TensorSpec& spec = program_.tensors[static_cast<size_t>(t)];
                std::vector<float>().swap(spec.data);
                spec.external = nullptr, spec.external_size = 0;
            }
    }
}

// The floats pack_weights allocates for `op` with table k (check_memory counts them before anything is packed).
size_t Engine::packed_floats(const OpSpec& op, const KernelTable& k) const {
    const ProgramSpec& p = program_;
    const int32_t in_c = p.values[op.inputs[0]].c, out_c = p.values[op.output].c;
    switch (static_cast<OpType>(op.type)) {
        case OpType::kConv: return k.conv_packed_size(in_c, out_c, op.params[0]);
        case OpType::kPointwise: {
            const int32_t g = op.params[0];
            return static_cast<size_t>(g) * k.pointwise_packed_size(in_c / g, out_c / g);
        }
        case OpType::kDepthwise: return k.depthwise_packed_size(in_c, op.params[0]);
        case OpType::kGhost:
            return k.pointwise_packed_size(in_c, op.params[0]) +
                   (op.params[1] > 0 ? k.depthwise_packed_size(op.params[1], op.params[2]) : 0);
        case OpType::kSqueezeExcite: {
            const int32_t rd = static_cast<int32_t>(p.tensors[op.tensors[0]].shape[0]);
            return k.pointwise_packed_size(in_c, rd) + k.pointwise_packed_size(rd, in_c);
        }
        default: return 0;
    }
}

// ShuffleNetV1's channel shuffle between its depthwise and its second grouped 1x1: with G shuffle groups of
// `per` channels, output channel j * G + i is input channel i * per + j. When the 1x1 that is its only reader has
// `per` groups of G channels, group g's k-th input channel is shuffled channel g * G + k, which is input channel
// k * per + g: the 1x1 reads the shuffle's input at a + g with a k stride of `per`, and the shuffle (a full pass
// over the map, and a parallel region, per unit) is dropped. Only this engine's copy of the program changes.
void Engine::plan_folds() {
    ProgramSpec& p = program_;
    folded_.assign(p.ops.size(), 0);
    for (size_t i = 0; i + 1 < p.ops.size(); ++i) {
        const OpSpec& s = p.ops[i];
        const OpSpec& next = p.ops[i + 1];
        if (static_cast<OpType>(s.type) != OpType::kChannelShuffle || static_cast<OpType>(next.type) != OpType::kPointwise)
            continue;
        const int32_t c = p.values[s.inputs[0]].c, shuffle_groups = s.params[0], groups = next.params[0];
        if (groups < 2 || int64_t{shuffle_groups} * groups != c || !next_op_is_sole_reader(p, i)) continue;
        folded_[i] = 1;
        p.ops[i + 1].inputs[0] = s.inputs[0];
    }
}

void Engine::plan_streaming() {
    const ProgramSpec& p = program_;
    const bool one_thread = threads() == 1;
    streams_.assign(p.ops.size(), kStreamNone);
    // Squeeze-and-excitation: the pooled vector, the reduced one, the gate, and a partial mean per pool task.
    size_t scratch = 16;
    for (const OpSpec& op : p.ops)
        if (static_cast<OpType>(op.type) == OpType::kSqueezeExcite) {
            const size_t c = static_cast<size_t>(p.values[op.inputs[0]].c);
            const size_t rd = static_cast<size_t>(p.tensors[op.tensors[0]].shape[0]);
            scratch = std::max(scratch, 2 * c + rd + static_cast<size_t>(se_pool_tasks(threads())) * c + 16);
        }
    auto plane_of = [&](int32_t value) -> const BufferSpec& { return p.buffers[p.values[value].buffer]; };
    for (size_t i = 0; i < p.ops.size(); ++i) {
        const OpSpec& g = p.ops[i];
        if (static_cast<OpType>(g.type) != OpType::kGhost) continue;
        const BufferSpec& b = plane_of(g.output);
        const size_t raw_plane = ghost_fuses_residual(g) ? static_cast<size_t>(b.h) * b.w * g.params[0] : 0;
        // It may stream into op i + 1 if it reads nothing streamed itself and op i + 1 alone reads its output.
        const bool can_stream = g.inputs.size() == 1 && i + 1 < p.ops.size() && !(i > 0 && streams_[i - 1]) &&
                                next_op_is_sole_reader(p, i);
        if (!one_thread) {  // threads: the fused residual keeps a whole image's primary output; a ring per slice
            scratch = std::max(scratch, raw_plane);
            if (!can_stream) continue;
            const OpSpec& next = p.ops[i + 1];
            const int32_t slices = ghost_stream_slices(plane_of(next.output).h, threads());
            if (slices == 0) continue;
            if (static_cast<OpType>(next.type) == OpType::kDepthwise && next.inputs.size() == 1) {
                streams_[i] = kStreamDepthwise;
                scratch = std::max(scratch, size_t(slices) * ghost_ring_rows(g, next) * b.w * b.c);
            } else if (static_cast<OpType>(next.type) == OpType::kGhost &&
                       (next.inputs.size() == 1 || ghost_fuses_residual(next)) &&
                       b.h / slices > next.params[2] / 2 * 2) {  // slices with rows besides their edge rows
                // (a slice takes no unfused residual: GhostRows). The consumer's raw plane, then the rings.
                streams_[i] = kStreamGhost;
                const size_t raw = ghost_fuses_residual(next) ? (static_cast<size_t>(b.h) * b.w * next.params[0] + 15) / 16 * 16 : 0;
                scratch = std::max(scratch, raw + size_t(slices) * ghost_band_ring_rows(g, b.h, b.w) * b.w * b.c);
            }
            continue;
        }
        // One thread: a ring for the raw primary rows, after the ring of a Ghost module streaming into this one.
        const size_t in_ring =
            i > 0 && streams_[i - 1] == kStreamGhost
                ? static_cast<size_t>(ghost_band_ring_rows(p.ops[i - 1], b.h, b.w)) * b.w * plane_of(g.inputs[0]).c
                : 0;
        const size_t raw_ring =
            raw_plane ? static_cast<size_t>(ghost_band_ring_rows(g, b.h, b.w)) * b.w * g.params[0] : 0;
        scratch = std::max(scratch, in_ring + raw_ring);
        if (!can_stream) continue;
        const OpSpec& next = p.ops[i + 1];
        const OpType nt = static_cast<OpType>(next.type);
        if (nt == OpType::kDepthwise && next.inputs.size() == 1) {
            streams_[i] = kStreamDepthwise;
            scratch = std::max(scratch, static_cast<size_t>(ghost_ring_rows(g, next)) * b.w * b.c);
        } else if (nt == OpType::kGhost) {
            streams_[i] = kStreamGhost;  // the consumer's rings are sized when the loop reaches it
        }
    }
    scratch_floats_ = scratch + 16;
}

void Engine::plan_arena() {
    const ProgramSpec& p = program_;
    const size_t nb = p.buffers.size();
    const int64_t kNever = std::numeric_limits<int64_t>::max();
    std::vector<int64_t> first(nb, kNever), last(nb, -2);
    auto touch = [&](int32_t value, int64_t when) {
        const int32_t b = p.values[value].buffer;
        first[b] = std::min(first[b], when);
        last[b] = std::max(last[b], when);
    };
    touch(p.input_value, -1);
    for (size_t i = 0; i < p.ops.size(); ++i) {
        if (folded_[i]) continue;  // runs as part of op i + 1, which reads its input
        const bool streamed_in = i > 0 && streams_[i - 1];  // its input 0 lives in a ring, not the arena
        for (size_t s = streamed_in ? 1 : 0; s < p.ops[i].inputs.size(); ++s) touch(p.ops[i].inputs[s], static_cast<int64_t>(i));
        if (!streams_[i]) touch(p.ops[i].output, static_cast<int64_t>(i));
        // A streamed pair writes op i + 1's output while op i still reads its inputs (at threads, one slice's
        // output rows while another slice reads input rows further up), so they may not share memory.
        else touch(p.ops[i + 1].output, static_cast<int64_t>(i));
    }
    touch(p.output_value, static_cast<int64_t>(p.ops.size()));

    // Largest first, each at the lowest 64-byte-aligned offset that no buffer alive at the same time uses.
    std::vector<size_t> size(nb, 0);
    std::vector<size_t> order;
    for (size_t b = 0; b < nb; ++b) {
        if (first[b] == kNever) continue;
        const BufferSpec& buf = p.buffers[b];
        const int64_t pixels = int64_t{buf.h} * buf.w;
        const size_t floats = static_cast<size_t>(p.max_batch) * pixels * plane_pixel_stride(buf.c, pixels);
        size[b] = (floats + 15) / 16 * 16;
        order.push_back(b);
    }
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return size[a] > size[b]; });
    buffer_offset_.assign(nb, 0);
    std::vector<size_t> placed;
    arena_floats_ = 0;
    for (size_t b : order) {
        std::vector<std::pair<size_t, size_t>> busy;
        for (size_t o : placed)
            if (first[o] <= last[b] && first[b] <= last[o]) busy.emplace_back(buffer_offset_[o], buffer_offset_[o] + size[o]);
        std::sort(busy.begin(), busy.end());
        size_t offset = 0;
        for (const auto& [lo, hi] : busy) {
            if (offset + size[b] <= lo) break;
            offset = std::max(offset, hi);
        }
        buffer_offset_[b] = offset;
        arena_floats_ = std::max(arena_floats_, offset + size[b]);
        placed.push_back(b);
    }
}

// After check_memory: the arena, scratch and slice edges, and each op's views into the arena.
void Engine::allocate() {
    const ProgramSpec& p = program_;
    scratch_.assign(scratch_floats_, 0.0f);
    if (threads() > 1)  // (ghost_row_slices: one thread never slices)
        slice_edges_.reset(new SliceEdge[static_cast<size_t>(p.max_batch) * kMaxGhostSlices]);
    const size_t bytes = std::max<size_t>(64, arena_floats_ * sizeof(float));
    arena_ = static_cast<float*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
    if (arena_ == nullptr) throw std::bad_alloc();
    std::memset(arena_, 0, (bytes + 63) / 64 * 64);

    for (size_t i = 0; i < p.ops.size(); ++i) {
        Prepared& prep = *prepared_[i];
        for (int32_t v : p.ops[i].inputs) prep.in.push_back(view_of(v));
        prep.out = view_of(p.ops[i].output);
    }
}

View Engine::view_of(int32_t value) const {
    const ValueSpec& v = program_.values[value];
    const BufferSpec& b = program_.buffers[v.buffer];
    View view;
    view.data = arena_ + buffer_offset_[v.buffer] + v.c_offset;
    view.c = v.c;
    view.h = b.h;
    view.w = b.w;
    view.stride = plane_pixel_stride(b.c, int64_t{b.h} * b.w);
    view.image_stride = int64_t{b.h} * b.w * view.stride;
    return view;
}

}  // namespace ghostfast
