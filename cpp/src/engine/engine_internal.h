// Engine internals shared by engine.cpp (build) and executor.cpp (run).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ghostfast/engine.h"

namespace ghostfast {

const char* op_type_name(OpType t);

// Incremented in each child process that fork() makes (by a pthread_atfork handler that the first Engine
// registers). An engine whose recorded generation differs runs in a forked child: Engine::adopt_after_fork.
extern std::atomic<uint64_t> g_fork_generation;
inline bool forked_since(const std::atomic<uint64_t>& generation) {
    return generation.load(std::memory_order_acquire) != g_fork_generation.load(std::memory_order_relaxed);
}

// A Ghost op whose residual is added inside its kernels' epilogues (no activation on either half, so the
// residual commutes with them): the primary GEMM also writes its output, before the residual, to scratch for
// the cheap depthwise to read. Otherwise the residual is a separate pass after the depthwise.
bool ghost_fuses_residual(const OpSpec& op);

// How op i hands its output to op i + 1 on one thread (Engine::streams_): through the arena, or row by row
// through a ring of a few rows in scratch, into a depthwise or a Ghost module that is its only reader.
enum StreamKind : uint8_t { kStreamNone = 0, kStreamDepthwise = 1, kStreamGhost = 2 };

// Primary rows a single-thread Ghost module computes per step: kGhostBandRows, or the whole map when it has at
// most kGhostWholeMapPixels pixels (7x7 and 14x14 at 224 x 224). In bands of 4 rows a 7x7 map's 1x1s ran as
// blocks of 28 and 21 rows, each streaming all the weights (up to 300 KiB for GhostNet's last blocks), the first
// time from memory with few row tiles to spread the wait over. GhostNet 1.0x, 1 thread: 0.983x and 1 / 1.011
// paired, 0.971x and 0.973x together with the panel prefetch of kernels_impl.h.
constexpr int32_t kGhostBandRows = 4;
constexpr int64_t kGhostWholeMapPixels = 196;
inline int32_t ghost_band_rows(int32_t h, int32_t w) {
    return int64_t{h} * w <= kGhostWholeMapPixels ? h : kGhostBandRows;
}
// A Ghost module at more than one thread runs as one parallel region of row slices, each a band loop over its
// rows (GhostRows), where each thread gets kGhostSlicesPerThread slices of at least kGhostSliceRows rows (the
// 112x112 maps at 224 x 224, 2 threads) and the residual, if any, is fused; otherwise (0 slices) as two regions,
// its 1x1 and then its depthwise, each split into row tasks. GhostNet 1.0x, 2 threads, per block in one process:
// blocks 0 and 1 0.89x and 0.95x, the model 0.994x. On 56x56 and 28x28 maps slices of 7 or 14 rows measured
// 0.97-1.06x, on 14x14 maps 1.1-1.3x: fewer tasks to even out a late thread, and edge rows that are a large
// share of a slice's depthwise.
constexpr int32_t kGhostSliceRows = 14;
constexpr int32_t kGhostSlicesPerThread = 4;
constexpr int32_t kMaxGhostSlices = 64;
int32_t ghost_row_slices(const OpSpec& ghost, int32_t h, int threads);
// An edge between two row slices: the two slices each arrive once per run, and the second to arrive computes
// the cheap rows either side of it (they read primary rows of both). Arrivals only grow, by two per run, so
// an odd count before one's own arrival means the other slice has finished.
struct alignas(64) Engine::SliceEdge {
    std::atomic<uint32_t> arrivals{0};
    bool second_arrival() { return (arrivals.fetch_add(1, std::memory_order_acq_rel) & 1) != 0; }
};

// Output rows of the depthwise computed per step when a Ghost module streams into it.
constexpr int32_t kStreamOutRows = 4;
// A Ghost module streaming into a depthwise or a Ghost module at more than one thread: the consumer's output rows
// in kStreamSlicesPerThread slices per thread, each its own streaming loop over its own ring. A slice's producer
// recomputes the few rows beyond the slice's edge that the consumer reads (a depthwise's window, the cheap
// depthwise's pad rows of primary output); a Ghost consumer's cheap rows at an edge are computed by the second
// slice to finish, as in run_ghost_slices. One region instead of two to four, and the intermediate rows stay in
// each core's L2 instead of going to memory as a full plane that the consumer reads back. GhostNet 1.0x,
// 2 threads, per block in one process: block 1 (112x112x48 into a depthwise of 56 rows) 0.83x over 20 rounds;
// blocks 0 and 2 (Ghost into Ghost, 112 and 56 rows) 0.93x and 0.92x over 60 rounds in a slow phase, within
// the noise (0.95-1.04x) in a fast one. Outputs of 28 rows (block 3's depthwise) measured 0.87-1.06x in four
// runs, no clear gain; of 14 rows with 2 slices per thread 1.5x: the recomputed rows are a larger share of a
// slice. 2 slices per thread (more even shares, twice the recomputed rows) made block 1 0.87x.
constexpr int32_t kStreamSliceMinRows = 56;
constexpr int32_t kStreamSlicesPerThread = 1;
// Slices of a streamed consumer of out_h output rows at `threads` (0: not streamed; at most kMaxGhostSlices).
int32_t ghost_stream_slices(int32_t out_h, int threads);

// Ring rows that hold everything still read at any step (see GhostRows::advance and executor.cpp). A Ghost
// module's output streamed into a depthwise: rows the cheap and the following depthwise read, plus one step's
// new rows. Rows advanced one band at a time (a Ghost module's output streamed into a Ghost module, or its raw
// primary rows when its residual is fused): the band plus the rows its cheap depthwise reads either side.
inline int32_t ghost_ring_rows(const OpSpec& ghost, const OpSpec& dw) {
    const int32_t pad_cheap = ghost.params[2] / 2, k = dw.params[0], s = dw.params[1];
    return kStreamOutRows * s + k + 2 * pad_cheap;
}
inline int32_t ghost_band_ring_rows(const OpSpec& ghost, int32_t h, int32_t w) {
    return ghost_band_rows(h, w) + 2 * (ghost.params[2] / 2);
}

// Floats from one pixel to the next in an arena plane of c channels. A pixel stride that is a multiple of 1 KiB
// (c a multiple of 256: MobileNetV1's 256 / 512 / 1024 channels, ShuffleNetV1's 768) maps all the pixels of a
// depthwise window to a handful of L1 sets, which then evict each other on every load: a 3x3 depthwise over
// 14x14x512 ran 3.3x slower, over 7x7x1024 1.9x, than with one cache line of padding per pixel (paired,
// kernel alone; the 1x1 kernels measured the same either way, 0.96-1.02). Smaller strides (c = 32 to 128) span
// enough sets, and there the padding's extra bytes cost more than it saved (1.08-1.6x).
inline int64_t plane_pixel_stride(int32_t c, int64_t pixels) {
    return c % 256 == 0 && pixels > 1 ? int64_t{c} + 16 : int64_t{c};
}

// Tasks of a squeeze-and-excitation's pool at `threads` threads: each makes a partial mean of a contiguous share
// of the pixels in scratch (two per thread, so that a late thread's share can be taken over).
inline int32_t se_pool_tasks(int threads) { return threads == 1 ? 1 : 2 * threads; }

// 64-byte-aligned, zero-initialised float storage (packed weights, the arena).
class AlignedFloats {
public:
    AlignedFloats() = default;
    explicit AlignedFloats(size_t n);
    ~AlignedFloats();
    AlignedFloats(AlignedFloats&& o) noexcept;
    AlignedFloats& operator=(AlignedFloats&& o) noexcept;
    AlignedFloats(const AlignedFloats&) = delete;
    AlignedFloats& operator=(const AlignedFloats&) = delete;
    float* data() { return data_; }
    const float* data() const { return data_; }
    size_t size() const { return size_; }

private:
    float* data_ = nullptr;
    size_t size_ = 0;
};

// A value resolved against the arena: channel slice `c` of NHWC planes; image i, pixel p at
// data + i * image_stride + p * stride.
struct View {
    float* data = nullptr;
    int32_t c = 0, h = 0, w = 0;
    int64_t stride = 0;
    int64_t image_stride = 0;
    float* image(int32_t i) const { return data + i * image_stride; }
    int64_t pixels() const { return int64_t{h} * w; }
};

struct Engine::Prepared {
    OpType type{};
    const KernelTable* kernels = nullptr;  // the table that packed `packed` and runs the op
    std::vector<View> in;
    View out;
    std::vector<AlignedFloats> packed;  // per op type: weights in the kernel table's layout
};

}  // namespace ghostfast
