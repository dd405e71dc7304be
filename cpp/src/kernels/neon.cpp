// The AArch64 Advanced SIMD (NEON) kernel table, ARMv8.0 baseline: 4 floats per vector, 32 vector registers.
// Selected on every ARM64 CPU (Advanced SIMD is mandatory there); no extra -march flag.
//
// Two things differ from the x86 tables. NEON has no masked loads or stores, so channel tails of 1-3 floats move
// as a 64-bit half and single lanes; a tail of 2 (half a vector) is one 64-bit move. And a fused multiply-add
// can take its multiplier from one lane of another register (fmla v.4s, v.4s, v.s[l]), so the pointwise tile
// loads four consecutive K values of each A row in one 128-bit load and uses each lane in turn, instead of one
// load-and-broadcast per row and K step (GF_HAS_FMA_LANE in kernels_impl.h).
//
// A later ARMv8.2 table (dot-product for int8, fp16 arithmetic) would be another translation unit like this one,
// built with its own -march flags and gated in dispatch.cpp by the features cpu_features() already reads.
#include <arm_neon.h>

#include <cstddef>
#include <cstdint>

#include "ghostfast/kernels.h"

namespace ghostfast {
namespace neon {

// ---- vector traits --------------------------------------------------------------------------------------------
static constexpr int kW = 4;
// Pointwise 8 x 8: 16 accumulators + 8 A vectors (4 K steps of each row) + 2 weight vectors = 26 of the 32
// registers. A 12-column (3-vector) panel would waste a third of a panel on GhostNet's many 8- and 16-channel
// outputs.
static constexpr int kPwMR = 8;
static constexpr int kPwNV = 2;
// Tail panels one vector wide: 12 x 4, 12 accumulators + 12 A vectors + 1 weight vector.
static constexpr int kPwMR1 = 12;
// Conv 8 pixels x 8 output channels: 16 accumulators + 2 weight vectors + 1 broadcast.
static constexpr int kConvXB = 8;
static constexpr int kConvNV = 2;
// Depthwise: 8 accumulators + up to 7 weights (k = 7) + 1 input, so 7x7 runs in row blocks too.
static constexpr int kDwXB = 8;
#define GF_DW_K7_ROWS 1

typedef float32x4_t vf;
typedef int32_t vmask;  // a lane count, 1..4: NEON has no lane masks for memory operations

static inline vf v_load(const float* p) { return vld1q_f32(p); }
static inline void v_store(float* p, vf v) { vst1q_f32(p, v); }
static inline vmask v_mask(int32_t n) { return n; }
// Only the first n floats are read or written, so a tail at the end of a buffer never touches memory past it.
static inline vf v_loadm(const float* p, vmask n) {
    const float32x2_t zero = vdup_n_f32(0.0f);
    switch (n) {
        case 1: return vcombine_f32(vld1_lane_f32(p, zero, 0), zero);
        case 2: return vcombine_f32(vld1_f32(p), zero);
        case 3: return vcombine_f32(vld1_f32(p), vld1_lane_f32(p + 2, zero, 0));
        default: return vld1q_f32(p);
    }
}
static inline void v_storem(float* p, vf v, vmask n) {
    switch (n) {
        case 1: vst1q_lane_f32(p, v, 0); break;
        case 2: vst1_f32(p, vget_low_f32(v)); break;
        case 3:
            vst1_f32(p, vget_low_f32(v));
            vst1q_lane_f32(p + 2, v, 2);
            break;
        default: vst1q_f32(p, v);
    }
}
// The first 2 lanes (upper lanes zero on load, untouched on store).
static inline vf v_loadh(const float* p) { return vcombine_f32(vld1_f32(p), vdup_n_f32(0.0f)); }
static inline void v_storeh(float* p, vf v) { vst1_f32(p, vget_low_f32(v)); }
static inline vf v_set1(float s) { return vdupq_n_f32(s); }
static inline vf v_bcast(const float* p) { return vld1q_dup_f32(p); }  // ld1r: load and replicate
static inline vf v_zero() { return vdupq_n_f32(0.0f); }
static inline vf v_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
static inline vf v_add(vf a, vf b) { return vaddq_f32(a, b); }
static inline vf v_sub(vf a, vf b) { return vsubq_f32(a, b); }
static inline vf v_mul(vf a, vf b) { return vmulq_f32(a, b); }
static inline vf v_div(vf a, vf b) { return vdivq_f32(a, b); }
// fmax/fmin return NaN when either operand is NaN: a NaN x propagates (c is never NaN).
static inline vf v_max(vf x, vf c) { return vmaxq_f32(x, c); }
static inline vf v_min(vf x, vf c) { return vminq_f32(x, c); }
static inline vf v_pow2_from_magic(vf t) {
    // t's bits are 0x4B400000 + n; (bits + 127) << 23 = (n + 127) << 23 because the shift drops 0x4B400000.
    const uint32x4_t bits = vaddq_u32(vreinterpretq_u32_f32(t), vdupq_n_u32(127));
    return vreinterpretq_f32_u32(vshlq_n_u32(bits, 23));
}
// acc + b * x[L]: the multiplier comes from lane L of x, no broadcast register needed.
#define GF_HAS_FMA_LANE 1
template <int L>
static inline vf v_fma_lane(vf acc, vf b, vf x) {
    return vfmaq_laneq_f32(acc, b, x, L);
}

#include "kernels/kernels_impl.h"

extern const KernelTable kTable;
const KernelTable kTable = {GF_KERNEL_TABLE_ENTRIES("neon")};

}  // namespace neon
}  // namespace ghostfast
