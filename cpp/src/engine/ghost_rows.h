// One image of a Ghost module on one thread, computed in row order: primary (1x1) rows as their input rows
// become available, cheap (depthwise) rows as soon as the primary rows around them exist, the residual last.
// Input, output and the raw primary rows may each be a whole plane or a ring of a few rows (row r at
// r % rows), so that a Ghost module can stream rows into the op that reads its output, or read rows streamed
// by the Ghost module before it, without full-size intermediate planes.
#pragma once

#include <cstdint>

#include "ghostfast/kernels.h"

namespace ghostfast {

// Rows of an NHWC plane: pixel stride `stride`, `ring` rows (0: the whole plane; row r at r % ring otherwise).
struct RowBuffer {
    float* data = nullptr;
    int64_t stride = 0;
    int32_t ring = 0;
    float* row(int32_t r, int32_t w) const { return data + int64_t{ring > 0 ? r % ring : r} * w * stride; }
    // Rows from r on that are contiguous in memory (up to the ring's end).
    int32_t run(int32_t r, int32_t rows) const { return ring > 0 && ring - r % ring < rows ? ring - r % ring : rows; }
};

struct GhostShape {
    int32_t h = 0, w = 0, in_c = 0, init = 0, cheap = 0, kernel = 1;
    Act primary_act = Act::kNone, cheap_act = Act::kNone;
    const float* primary_packed = nullptr;
    const float* cheap_packed = nullptr;
};

class GhostRows {
public:
    // residual (nullable): a whole plane with pixel stride r_stride, added to the output. raw.data non-null:
    // the residual rides in the kernels' epilogues (ghost_fuses_residual) and `raw` receives the primary rows
    // before it, for the cheap depthwise to read; otherwise it is a separate pass. A ring output takes no
    // residual.
    //
    // A slice [first, last) of the rows (threads, executor.cpp): primary rows first..last - 1, cheap rows
    // except the pad rows next to an inner edge (first > 0, last < h), which read primary rows of the slice
    // next to it; cheap_rows() computes those once both slices' primary rows exist. A slice takes no unfused
    // residual (it would change primary rows that the neighbour's edge rows still read).
    GhostRows(const KernelTable& k, const GhostShape& s, RowBuffer in, RowBuffer out, const float* residual,
              int64_t r_stride, RowBuffer raw, int32_t first = 0, int32_t last = -1);

    // Computes primary rows up to `rows` (their input rows must be available; at most the slice's end) and
    // every output row whose inputs then exist. A caller streaming into rings keeps rows alive as
    // ghost_ring_rows() describes.
    void advance(int32_t rows);
    // Output rows [first, done()) are complete (apart from a slice's edge rows).
    int32_t done() const { return cheap_done_; }
    // Primary rows computed so far (from the first).
    int32_t primary_done() const { return prim_done_; }
    // Cheap (depthwise) output rows [r0, r1), clipped to the map, whatever the slice: their primary rows, pad
    // either side, must exist.
    void cheap_rows(int32_t r0, int32_t r1);

private:
    void add_residual(int32_t r0, int32_t r1, int32_t c0, int32_t c1);

    const KernelTable& k_;
    GhostShape s_;
    RowBuffer in_, out_, raw_;
    const float* res_;
    int64_t r_stride_;
    int32_t pad_;
    int32_t last_;        // the slice's end row
    int32_t cheap_last_;  // its cheap rows end here (pad_ short of an inner edge)
    int32_t prim_done_, cheap_done_, res_done_;
};

}  // namespace ghostfast
