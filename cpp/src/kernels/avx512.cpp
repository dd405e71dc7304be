// The AVX-512 kernel table (F + BW + DQ + VL): 16 floats per vector, channel tails through __mmask16 masked
// loads/stores. Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl (CMakeLists.txt) and only ever called
// after cpu_features() reported all four.

// GCC 12's avx512fintrin.h builds its "undefined" pass-through operands from self-initialised locals, which
// -Wmaybe-uninitialized reports at every inlined use; the warning is about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "ghostfast/kernels.h"

namespace ghostfast {
namespace avx512 {

// ---- vector traits --------------------------------------------------------------------------------------------
static constexpr int kW = 16;
// Pointwise 8 x 32: 16 accumulators + 2 weight vectors + 1 broadcast of the 32 zmm registers; the 8 row
// pointers plus loop state still fit the 16 general-purpose registers (a 12-row tile would spill them).
static constexpr int kPwMR = 8;
static constexpr int kPwNV = 2;
// Tail panels one vector wide: 8 x 16 (8 accumulators cover the 4-cycle FMA latency on 2 ports).
static constexpr int kPwMR1 = 8;
// Conv 8 pixels x 32 output channels.
static constexpr int kConvXB = 8;
static constexpr int kConvNV = 2;
// Depthwise: 8 accumulators + up to 5 weights + 1 input.
static constexpr int kDwXB = 8;

typedef __m512 vf;
typedef __mmask16 vmask;

static inline vf v_load(const float* p) { return _mm512_loadu_ps(p); }
static inline void v_store(float* p, vf v) { _mm512_storeu_ps(p, v); }
// n in [1, 16]; the shift is done in 32 bits so n = 16 gives 0xFFFF.
static inline vmask v_mask(int32_t n) { return static_cast<__mmask16>((1u << n) - 1u); }
// Masked-off lanes are neither read (fault-suppressed) nor written.
static inline vf v_loadm(const float* p, vmask m) { return _mm512_maskz_loadu_ps(m, p); }
static inline void v_storem(float* p, vf v, vmask m) { _mm512_mask_storeu_ps(p, m, v); }
// The first 8 lanes (upper lanes zero on load, untouched on store).
static inline vf v_loadh(const float* p) { return _mm512_zextps256_ps512(_mm256_loadu_ps(p)); }
static inline void v_storeh(float* p, vf v) { _mm256_storeu_ps(p, _mm512_castps512_ps256(v)); }
static inline vf v_set1(float s) { return _mm512_set1_ps(s); }
static inline vf v_bcast(const float* p) { return _mm512_set1_ps(*p); }
static inline vf v_zero() { return _mm512_setzero_ps(); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_add(vf a, vf b) { return _mm512_add_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
// vmaxps/vminps return their second source when either input is NaN: x goes second so NaN propagates.
static inline vf v_max(vf x, vf c) { return _mm512_max_ps(c, x); }
static inline vf v_min(vf x, vf c) { return _mm512_min_ps(c, x); }
static inline vf v_pow2_from_magic(vf t) {
    // t's bits are 0x4B400000 + n; (bits + 127) << 23 = (n + 127) << 23 because the shift drops 0x4B400000.
    const __m512i bits = _mm512_add_epi32(_mm512_castps_si512(t), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(bits, 23));
}

#include "kernels/kernels_impl.h"

extern const KernelTable kTable;
const KernelTable kTable = {GF_KERNEL_TABLE_ENTRIES("avx512")};

}  // namespace avx512
}  // namespace ghostfast
