// The native engine: a validated program of fused ops over NHWC activation buffers planned into one arena.
//
// A program comes from the Python lowering (or from a saved file) and is untrusted: Engine's constructor checks
// every index, shape and parameter and throws std::invalid_argument on anything inconsistent, so a corrupted
// file gets an error, never an out-of-bounds access.
//
// Data model. A *buffer* is an NHWC activation tensor (per image: h x w pixels of c channels; max_batch images).
// A *value* is a channel slice [c_offset, c_offset + c) of a buffer. Concat costs nothing because producers write
// slices of one buffer; split / chunk are slices too. Ops read values and write one value.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ghostfast/kernels.h"
#include "ghostfast/thread_pool.h"

namespace ghostfast {

enum class OpType : int32_t {
    // params: [kernel, stride, pad, act]; tensors: [w (out_c, in_c, k, k), bias (out_c)]
    kConv = 1,
    // params: [groups, act]; inputs: [x] or [x, residual]; tensors: [w (out_c, in_c / groups), bias (out_c)]
    // out = act(w x + bias + residual). Same spatial size in and out; also linear layers on 1x1 values.
    kPointwise = 2,
    // params: [kernel, stride, pad, act]; tensors: [w (c, k, k), bias (c)]
    kDepthwise = 3,
    // The Ghost module: primary 1x1 conv into channels [0, init), cheap depthwise of the primary output's
    // first `cheap` channels into channels [init, init + cheap): no concat, no slice copy.
    // params: [init, cheap, cheap_kernel, primary_act, cheap_act]; inputs: [x] or [x, residual];
    // tensors: [pw (init, in_c), pb (init), dw (cheap, k, k), db (cheap)]
    kGhost = 4,
    // Squeeze-and-excitation: out = x * gate(fc2(act(fc1(mean_hw(x))))). params: [act, gate_act];
    // tensors: [w1 (rd, c), b1 (rd), w2 (c, rd), b2 (c)]. The output may be the input value (in place).
    kSqueezeExcite = 5,
    // out = act(a + b). params: [act]; inputs: [a, b]
    kAdd = 6,
    // params: [kernel, stride, pad]
    kMaxPool = 7,
    kAvgPool = 8,
    // Output value: (c, 1, 1).
    kGlobalAvgPool = 9,
    // PyTorch's channel_shuffle: out channel j * groups + i = in channel i * (c / groups) + j. params: [groups]
    kChannelShuffle = 10,
    kCopy = 11,
    // params: [act]; the output may be the input value (in place).
    kActivation = 12,
};

struct BufferSpec {
    int32_t c = 0, h = 0, w = 0;
};

struct ValueSpec {
    int32_t buffer = 0;
    int32_t c_offset = 0;
    int32_t c = 0;
};

struct OpSpec {
    int32_t type = 0;
    std::vector<int32_t> inputs;
    int32_t output = 0;
    std::vector<int32_t> params;
    std::vector<int32_t> tensors;
    std::string name;  // the source layer, for errors and the per-op profile
};

struct TensorSpec {
    std::vector<int64_t> shape;
    std::vector<float> data;
    // Instead of `data`: floats owned by the caller, alive until the Engine constructor returns (the Python
    // binding passes the numpy arrays this way, so building an engine makes no extra copy of the weights).
    const float* external = nullptr;
    size_t external_size = 0;
    const float* values() const { return external ? external : data.data(); }
    size_t size() const { return external ? external_size : data.size(); }
};

struct ProgramSpec {
    int32_t max_batch = 1;
    int32_t input_value = 0;   // (3, H, W) value the NCHW input is converted into
    int32_t output_value = 0;  // (classes, 1, 1) value copied out as logits
    std::vector<BufferSpec> buffers;
    std::vector<ValueSpec> values;
    std::vector<OpSpec> ops;
    std::vector<TensorSpec> tensors;
};

struct View;

struct OpTiming {
    std::string name;
    std::string type;
    double mean_ns;
    std::string isa;  // the kernel table that ran it ("" for ops without kernels of their own, and layout rows)
};

struct GhostShape;
struct RowBuffer;
class GhostRows;

class Engine {
public:
    // isa: "" for the best table this CPU supports, else "generic" / "avx2" / "avx512". threads: [1, kMaxThreads],
    // checked before any worker starts. Throws std::invalid_argument for an invalid program, and for one whose
    // activation memory, weights and scratch exceed what this machine can give (checked before allocating).
    // op_isas: the table of each op. Empty: the isa table, except that an op may go to the table of half its
    // vector width where that measured faster on this machine (kernel_choice.h; GHOSTFAST_KERNEL_CHOICE=fixed
    // turns the measuring off). Otherwise one entry per op: a table name, or "" for the isa table.
    Engine(ProgramSpec program, int threads, const std::string& isa, const std::vector<std::string>& op_isas = {});
    ~Engine();

    // input: n images, NCHW contiguous float32, 1 <= n <= max_batch. output: n x classes floats.
    // Calls on one engine are serialized by a mutex (they share the arena); use one engine per thread
    // for concurrent inference. In a child process made by fork() (even while another thread was inside run()),
    // the first call gives the engine a fresh mutex and thread pool (adopt_after_fork).
    void run(const float* input, int32_t n, float* output);

    // Per-op mean wall time over `iters` runs of `input` (n images).
    std::vector<OpTiming> profile_ops(const float* input, int32_t n, int32_t iters);

    // The validated program; weight tensors keep their shapes but not their data (released after packing).
    const ProgramSpec& program() const { return program_; }
    int32_t max_batch() const { return program_.max_batch; }
    int32_t in_c() const;
    int32_t in_h() const;
    int32_t in_w() const;
    int32_t classes() const;
    int threads() const { return pool_->threads(); }
    // Parallel regions (thread-pool jobs) run so far, over all runs: benchmarks/dispatch_overhead.py counts a
    // run's regions with it.
    uint64_t parallel_regions() const { return pool_->jobs(); }
    const char* isa() const { return kernels_->isa; }
    // The table that runs op i (isa() or, after measuring, the one of half its vector width).
    const char* op_isa(size_t i) const;
    size_t arena_bytes() const { return arena_floats_ * sizeof(float); }
    size_t weight_bytes() const { return packed_floats_ * sizeof(float); }

private:
    struct Prepared;
    struct SliceEdge;
    void validate();
    void check_memory() const;
    size_t packed_floats(const OpSpec& op, const KernelTable& k) const;
    std::vector<const KernelTable*> choose_kernels(const std::vector<std::string>& op_isas);
    void adopt_after_fork();
    void pack_weights(const std::vector<const KernelTable*>& op_kernels);
    void plan_folds();
    void plan_streaming();
    void plan_arena();
    void allocate();
    void run_locked(const float* input, int32_t n, float* output, std::vector<double>* op_ns);
    void execute(size_t op_index, int32_t n);
    void run_ghost_into_depthwise(size_t op_index, int32_t n);
    void run_ghost_into_ghost(size_t op_index, int32_t n);
    void run_ghost_into_ghost_slices(size_t op_index, int32_t n, int32_t slices);
    void run_ghost_slices(size_t op_index, int32_t n, int32_t slices);
    void finish_slice_edges(GhostRows& rows, int32_t img, int32_t s, int32_t slices, int32_t first, int32_t last,
                            int32_t pad);
    void run_pointwise_shuffled(size_t op_index, const PointwiseArgs& args);
    GhostShape ghost_shape(size_t op_index) const;
    GhostRows ghost_rows_to_plane(size_t op_index, int32_t img, RowBuffer in, size_t raw_offset);
    View view_of(int32_t value) const;
    template <class F>
    void parallel(int64_t tasks, F& fn);

    ProgramSpec program_;
    const KernelTable* kernels_;
    std::unique_ptr<ThreadPool> pool_;  // a pointer so that a forked child can replace it (adopt_after_fork)
    std::vector<std::unique_ptr<Prepared>> prepared_;
    std::vector<size_t> buffer_offset_;  // floats, per buffer
    float* arena_ = nullptr;
    size_t arena_floats_ = 0;
    size_t packed_floats_ = 0;
    size_t scratch_floats_ = 0;   // scratch_'s planned size (allocated after check_memory)
    std::vector<float> scratch_;  // SE vectors; a Ghost op's rings or pre-residual primary output (plan_streaming)
    // The op that reads the caller's NCHW input in place (a stem conv that is the input's only reader), or
    // -1: then the input is first converted into its NHWC arena value.
    int64_t planar_input_op_ = -1;
    // streams_[i] (StreamKind): op i, a Ghost module, streams its rows through a ring buffer in scratch_ into
    // op i + 1 (a depthwise or a Ghost module, its only reader), which then does nothing of its own; their
    // intermediate value gets no arena space. At more threads, only into a consumer of at least kStreamSliceMinRows
    // output rows (a Ghost consumer with no residual or a fused one), in row slices (executor.cpp).
    std::vector<uint8_t> streams_;
    // folded_[i]: op i, a channel shuffle, never runs: op i + 1, a grouped 1x1, reads its input instead, through
    // PointwiseArgs::a_kstride (plan_folds).
    std::vector<uint8_t> folded_;
    // Where a Ghost module's row slices meet at more than one thread (executor.cpp), per image and slice.
    std::unique_ptr<SliceEdge[]> slice_edges_;
    const float* run_input_ = nullptr;  // the caller's input during run_locked
    std::unique_ptr<std::mutex> mutex_;
    // The fork generation (fork_generation() in engine.cpp) that built mutex_ and pool_: run() compares it with
    // the current one, a relaxed load and a compare, to notice that it runs in a forked child.
    std::atomic<uint64_t> fork_generation_{0};
};

}  // namespace ghostfast
