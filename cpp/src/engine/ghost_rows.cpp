#include "engine/ghost_rows.h"

#include <algorithm>

namespace ghostfast {

GhostRows::GhostRows(const KernelTable& k, const GhostShape& s, RowBuffer in, RowBuffer out, const float* residual,
                     int64_t r_stride, RowBuffer raw, int32_t first, int32_t last)
    : k_(k), s_(s), in_(in), out_(out), raw_(raw), res_(residual), r_stride_(r_stride), pad_(s.kernel / 2) {
    last_ = last < 0 ? s.h : last;
    cheap_last_ = last_ == s.h ? s.h : std::max(first, last_ - pad_);
    prim_done_ = first;
    cheap_done_ = res_done_ = first == 0 ? 0 : std::min(cheap_last_, first + pad_);
}

void GhostRows::advance(int32_t rows) {
    const int32_t w = s_.w;
    rows = std::min(rows, last_);
    PointwiseArgs pa;
    pa.k = s_.in_c, pa.n = s_.init, pa.act = s_.primary_act, pa.packed = s_.primary_packed;
    pa.a_stride = in_.stride, pa.c_stride = out_.stride, pa.raw_stride = s_.init, pa.r_stride = r_stride_;
    // Primary rows in runs that wrap none of the rings.
    for (int32_t r = prim_done_; r < rows;) {
        int32_t run = out_.run(r, in_.run(r, rows - r));
        if (raw_.data) run = raw_.run(r, run);
        pa.a = in_.row(r, w), pa.c = out_.row(r, w);
        if (raw_.data) {
            pa.raw = raw_.row(r, w);
            pa.residual = res_ + int64_t{r} * w * r_stride_;
        }
        k_.pointwise(pa, 0, int64_t{run} * w, 0, s_.init);
        r += run;
    }
    prim_done_ = std::max(prim_done_, rows);
    // Cheap rows whose primary rows (pad_ either side) now exist.
    const int32_t cheap_end =
        prim_done_ == last_ ? cheap_last_ : std::min(cheap_last_, std::max(cheap_done_, prim_done_ - pad_));
    if (cheap_end > cheap_done_) cheap_rows(cheap_done_, cheap_end);
    // Unfused residual: cheap channels of the new rows, primary channels the depthwise no longer reads.
    add_residual(cheap_done_, cheap_end, s_.init, s_.init + s_.cheap);
    const int32_t res_end = cheap_end == s_.h ? s_.h : std::max(res_done_, cheap_end - pad_);
    add_residual(res_done_, res_end, 0, s_.init);
    res_done_ = res_end;
    cheap_done_ = std::max(cheap_done_, cheap_end);
}

void GhostRows::cheap_rows(int32_t r0, int32_t r1) {
    r0 = std::max(r0, 0), r1 = std::min(r1, s_.h);
    if (s_.cheap == 0 || r1 <= r0) return;
    DepthwiseArgs d;
    const RowBuffer& src = raw_.data ? raw_ : out_;
    d.in = src.data, d.in_stride = src.stride, d.in_ring = src.ring;
    d.out = out_.data + s_.init, d.out_stride = out_.stride, d.out_ring = out_.ring;
    d.in_h = d.out_h = s_.h, d.in_w = d.out_w = s_.w;
    d.channels = s_.cheap, d.kernel = s_.kernel, d.stride = 1, d.pad = pad_;
    d.act = s_.cheap_act, d.packed = s_.cheap_packed;
    if (raw_.data) d.residual = res_ + s_.init, d.r_stride = r_stride_;
    k_.depthwise(d, r0, r1);
}

void GhostRows::add_residual(int32_t r0, int32_t r1, int32_t c0, int32_t c1) {
    if (!res_ || raw_.data || r1 <= r0 || c1 <= c0) return;
    // (the output is a whole plane here: rings take no residual)
    float* base = out_.data + c0;
    k_.add(base, out_.stride, res_ + c0, r_stride_, base, out_.stride, c1 - c0, Act::kNone, int64_t{r0} * s_.w,
           int64_t{r1} * s_.w);
}

}  // namespace ghostfast
