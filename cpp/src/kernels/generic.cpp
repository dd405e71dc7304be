// The portable kernel table: GCC/Clang vector extensions of 4 floats, so the same source becomes SSE2 on any
// x86-64, NEON on ARM64, and plain scalar code elsewhere. Also the fallback when GHOSTFAST_ISA=generic.
#include <cstddef>
#include <cstdint>

#include "ghostfast/kernels.h"

// The vector width and tiles are macros so that a developer can compile this file as GF_GENERIC_W=16,
// GF_GENERIC_PW_MR=8, GF_GENERIC_PW_MR1=8, GF_GENERIC_CONV_XB=8, GF_GENERIC_DW_XB=8, GF_GENERIC_NAME=avx512
// (the AVX-512 tiling on portable vectors, in place of avx512.cpp) and run the kernel tests on a machine
// without AVX-512.
#ifndef GF_GENERIC_W
#define GF_GENERIC_W 4
#endif
#ifndef GF_GENERIC_NAME
#define GF_GENERIC_NAME generic
#endif
#define GF_STR2(x) #x
#define GF_STRINGIFY(x) GF_STR2(x)
// Tiles sized for the register file: 16 vector registers on x86-64 (SSE2), 32 on ARM64 (NEON), where the
// pointwise tile grows to 8 x 8 (16 accumulators) and the other blocks to 8 pixels.
#if defined(__aarch64__)
#define GF_GENERIC_WIDE_REGS 1
#else
#define GF_GENERIC_WIDE_REGS 0
#endif
#ifndef GF_GENERIC_PW_MR
#define GF_GENERIC_PW_MR (GF_GENERIC_WIDE_REGS ? 8 : 6)
#endif
#ifndef GF_GENERIC_PW_MR1
#define GF_GENERIC_PW_MR1 (GF_GENERIC_WIDE_REGS ? 12 : 6)
#endif
#ifndef GF_GENERIC_CONV_XB
#define GF_GENERIC_CONV_XB (GF_GENERIC_WIDE_REGS ? 8 : 6)
#endif
#ifndef GF_GENERIC_DW_XB
#define GF_GENERIC_DW_XB (GF_GENERIC_WIDE_REGS ? 8 : 4)
#endif

namespace ghostfast {
namespace GF_GENERIC_NAME {

// ---- vector traits --------------------------------------------------------------------------------------------
static constexpr int kW = GF_GENERIC_W;
static constexpr int kPwMR = GF_GENERIC_PW_MR;  // SSE2: 6 x 8 = 12 accumulators of 16 registers
static constexpr int kPwNV = 2;
static constexpr int kPwMR1 = GF_GENERIC_PW_MR1;
static constexpr int kConvXB = GF_GENERIC_CONV_XB;
static constexpr int kConvNV = 2;
static constexpr int kDwXB = GF_GENERIC_DW_XB;

typedef float vf __attribute__((vector_size(GF_GENERIC_W * 4)));
typedef int32_t vi __attribute__((vector_size(GF_GENERIC_W * 4)));
typedef uint32_t vu __attribute__((vector_size(GF_GENERIC_W * 4)));
typedef int32_t vmask;  // a lane count: the tail helpers loop over it

static inline vf v_load(const float* p) {
    vf v;
    __builtin_memcpy(&v, p, sizeof v);  // an unaligned vector load
    return v;
}
static inline void v_store(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v); }
static inline vmask v_mask(int32_t n) { return n; }
static inline vf v_loadm(const float* p, vmask n) {
    vf v = {};
    for (int32_t i = 0; i < n; ++i) v[i] = p[i];
    return v;
}
static inline void v_storem(float* p, vf v, vmask n) {
    for (int32_t i = 0; i < n; ++i) p[i] = v[i];
}
// The first kW / 2 lanes (upper lanes zero on load, untouched on store).
static inline vf v_loadh(const float* p) {
    vf v = {};
    __builtin_memcpy(&v, p, sizeof v / 2);
    return v;
}
static inline void v_storeh(float* p, vf v) { __builtin_memcpy(p, &v, sizeof v / 2); }
// scalar - zero vector splats the scalar (exactly: s - 0 == s for every s, -0 and NaN included) and compiles
// to one shuffle; a lane-by-lane loop compiles to a chain of inserts.
static inline vf v_set1(float s) { return s - vf{}; }
static inline vf v_bcast(const float* p) { return v_set1(*p); }
static inline vf v_zero() { return vf{}; }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }  // contracted to FMA where the target has one
static inline vf v_add(vf a, vf b) { return a + b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_mul(vf a, vf b) { return a * b; }
static inline vf v_div(vf a, vf b) { return a / b; }
// Bitwise selects rather than ?: on vectors (portable across GCC and Clang); the comparison is false for a NaN
// x, which is then returned unchanged.
static inline vf v_max(vf x, vf c) {
    const vi lt = x < c;
    return (vf)(((vi)c & lt) | ((vi)x & ~lt));
}
static inline vf v_min(vf x, vf c) {
    const vi gt = x > c;
    return (vf)(((vi)c & gt) | ((vi)x & ~gt));
}
static inline vf v_pow2_from_magic(vf t) {
    // t's bits are 0x4B400000 + n; (bits + 127) << 23 = (n + 127) << 23 because the shift drops 0x4B400000.
    return (vf)((((vu)t) + 127u) << 23);
}

#include "kernels/kernels_impl.h"

extern const KernelTable kTable;
const KernelTable kTable = {GF_KERNEL_TABLE_ENTRIES(GF_STRINGIFY(GF_GENERIC_NAME))};

}  // namespace GF_GENERIC_NAME
}  // namespace ghostfast
