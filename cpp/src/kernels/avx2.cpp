// The AVX2 + FMA kernel table: 8 floats per vector, masked channel tails with vmaskmovps. Compiled with
// -mavx2 -mfma (CMakeLists.txt) and only ever called after cpu_features() reported avx2 and fma.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "ghostfast/kernels.h"

namespace ghostfast {
namespace avx2 {

// ---- vector traits --------------------------------------------------------------------------------------------
static constexpr int kW = 8;
// Pointwise 6 x 16: 12 accumulators + 2 weight vectors + 1 broadcast = 15 of the 16 ymm registers.
static constexpr int kPwMR = 6;
static constexpr int kPwNV = 2;
// Tail panels one vector wide: 12 x 8, again 12 accumulators.
static constexpr int kPwMR1 = 12;
// Conv 6 pixels x 16 output channels: the same register budget as the pointwise tile.
static constexpr int kConvXB = 6;
static constexpr int kConvNV = 2;
// Depthwise: 8 accumulators + up to 5 weights (k = 5) + 1 input = 14 registers.
static constexpr int kDwXB = 8;

typedef __m256 vf;
typedef __m256i vmask;

// Lane i of the mask for n lanes is set iff i < n: an 8-int window into this table starting at 8 - n.
alignas(64) static const int32_t kMaskTable[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

static inline vf v_load(const float* p) { return _mm256_loadu_ps(p); }
static inline void v_store(float* p, vf v) { _mm256_storeu_ps(p, v); }
static inline vmask v_mask(int32_t n) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kMaskTable + 8 - n));
}
// Masked-off lanes are neither read (no fault past the end of a buffer) nor written.
static inline vf v_loadm(const float* p, vmask m) { return _mm256_maskload_ps(p, m); }
static inline void v_storem(float* p, vf v, vmask m) { _mm256_maskstore_ps(p, m, v); }
// The first 4 lanes, as plain 128-bit moves (upper lanes zero on load, untouched on store). vmaskmovps is slow
// on AMD cores (a masked tail tile of a depthwise measured ~3x a full tile on Zen 4), and a tail of exactly
// half a vector is the common case in the zoo (12, 20, 36, 60, 92, 100 channels).
static inline vf v_loadh(const float* p) { return _mm256_zextps128_ps256(_mm_loadu_ps(p)); }
static inline void v_storeh(float* p, vf v) { _mm_storeu_ps(p, _mm256_castps256_ps128(v)); }
static inline vf v_set1(float s) { return _mm256_set1_ps(s); }
static inline vf v_bcast(const float* p) { return _mm256_broadcast_ss(p); }
static inline vf v_zero() { return _mm256_setzero_ps(); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm256_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
// vmaxps/vminps return their second source when either input is NaN: x goes second so NaN propagates.
static inline vf v_max(vf x, vf c) { return _mm256_max_ps(c, x); }
static inline vf v_min(vf x, vf c) { return _mm256_min_ps(c, x); }
static inline vf v_pow2_from_magic(vf t) {
    // t's bits are 0x4B400000 + n; (bits + 127) << 23 = (n + 127) << 23 because the shift drops 0x4B400000.
    const __m256i bits = _mm256_add_epi32(_mm256_castps_si256(t), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(bits, 23));
}

#include "kernels/kernels_impl.h"

extern const KernelTable kTable;
const KernelTable kTable = {GF_KERNEL_TABLE_ENTRIES("avx2")};

}  // namespace avx2
}  // namespace ghostfast
