// The optimized kernels, written once for every ISA. This file is included by each ISA translation unit
// (generic.cpp, avx2.cpp, avx512.cpp, neon.cpp) INSIDE that unit's own namespace, after the unit has defined its vector
// traits. Everything here is `static` (internal linkage), so nothing compiled with AVX-512 flags can ever be
// merged by the linker into code that a baseline caller reaches. No std:: templates here for the same reason
// (their instantiations are COMDAT and shared across translation units).
//
// The traits each ISA unit provides before including this file:
//   vf, vmask                    a vector of kW floats; a "first n lanes" mask for channel tails
//   kW                           floats per vector
//   kPwMR, kPwNV                 pointwise micro-tile: kPwMR rows x (kPwNV * kW) columns of accumulators
//   kPwMR1                       rows of the one-vector-wide tile used for narrow tail panels
//   kConvXB, kConvNV             dense conv micro-tile: kConvXB output pixels x (kConvNV * kW) output channels
//   kDwXB                        depthwise: output pixels accumulated at once along a row
//   v_load/v_store               unaligned full-vector load/store
//   v_mask(n), v_loadm, v_storem first-n-lanes (1 <= n <= kW) masked load (other lanes 0) / store (others untouched)
//   v_loadh, v_storeh            the first kW / 2 lanes, exactly (the same contract), without a mask
//   v_bcast(p), v_set1, v_zero   broadcasts
//   v_fma(a, b, c) = a * b + c, v_add, v_sub, v_mul, v_div
//   v_max(x, c), v_min(x, c)     return x when x is NaN (so activations propagate NaN)
//   v_pow2_from_magic(t)         the float 2^n where t = 1.5 * 2^23 + n (n an integer, |n| < 2^22)
// Optionally (GF_HAS_FMA_LANE defined, kW == 4):
//   v_fma_lane<L>(acc, b, x)     acc + b * x[L], the multiplier taken from one lane (NEON's fmla by element)
// GF_DW_K7_ROWS defined: 7x7 depthwise gets the row-block kernels of 3x3 and 5x5 (needs 32 vector registers).
// No kernel allocates, locks, or assumes alignment (activation slices at channel offsets are 4-byte aligned).

#ifndef GF_KERNEL_MACROS
#define GF_KERNEL_MACROS
#define GF_INLINE inline __attribute__((always_inline))
// Full unrolling of the constant-trip-count loops over accumulators is what keeps them in registers.
#define GF_UNROLL _Pragma("GCC unroll 64")
#endif

static_assert(kPwNV >= 1 && kPwNV <= 3, "pointwise tiles are 1..3 vectors wide");
static_assert(kConvNV >= 1 && kConvNV <= 3, "conv tiles are 1..3 vectors wide");

static constexpr int kPwNR = kPwNV * kW;      // columns per packed pointwise panel
static constexpr int kConvNR = kConvNV * kW;  // output channels per packed conv panel

// ---------------------------------------------------------------------------------------------------------------
// Small scalar helpers (no <algorithm> in ISA units).

static GF_INLINE int32_t imin(int32_t a, int32_t b) { return a < b ? a : b; }
static GF_INLINE int32_t imax(int32_t a, int32_t b) { return a > b ? a : b; }
static GF_INLINE int64_t lmin(int64_t a, int64_t b) { return a < b ? a : b; }
static GF_INLINE int32_t div_up(int32_t a, int32_t b) { return (a + b - 1) / b; }

// Channel tails. A tail of exactly half a vector (12, 20, 36, 60, 92, 100 channels with 8-float vectors: the
// common case in the zoo) moves through plain narrower loads/stores; other tails are masked. Masked moves are
// slow on AMD cores: a masked tail tile of a depthwise measured ~3x a full tile on Zen 4 (AVX2).
enum TailKind : int { kTailNone = 0, kTailMasked = 1, kTailHalf = 2 };

// A vector load/store of a compile-time tail kind (inner loops: full tiles pay nothing for the tail's
// existence).
template <int kTail>
static GF_INLINE vf v_load_t(const float* p, vmask m) {
    if (kTail == kTailHalf) return v_loadh(p);
    if (kTail == kTailMasked) return v_loadm(p, m);
    return v_load(p);
}
template <int kTail>
static GF_INLINE void v_store_t(float* p, vf v, vmask m) {
    if (kTail == kTailHalf)
        v_storeh(p, v);
    else if (kTail == kTailMasked)
        v_storem(p, v, m);
    else
        v_store(p, v);
}
// The same for a tail of `lanes` (1 <= lanes < kW) known at run time (epilogues and per-pixel tails, outside the
// inner loops).
static GF_INLINE vf v_load_n(const float* p, vmask m, int32_t lanes) {
    return lanes == kW / 2 ? v_loadh(p) : v_loadm(p, m);
}
static GF_INLINE void v_store_n(float* p, vf v, vmask m, int32_t lanes) {
    if (lanes == kW / 2)
        v_storeh(p, v);
    else
        v_storem(p, v, m);
}

// ---------------------------------------------------------------------------------------------------------------
// Activations, in registers.

// exp(x): Cody-Waite range reduction x = n*ln2 + r, |r| <= ln2/2, then a degree-7 polynomial for e^r (Cephes
// coefficients; measured max relative error 8.1e-8, ~1.4 ulp, over [-87.3, 88.3]), scaled by 2^n built directly in the exponent bits. The input is clamped to the range
// where 2^n stays a normal float, so there is no overflow (e^88.376 ~ 2.4e38) and no denormal scale; the clamp
// keeps NaN (v_max/v_min return x for NaN x) and NaN then survives every later operation.
static GF_INLINE vf v_exp(vf x) {
    x = v_min(v_max(x, v_set1(-87.33654f)), v_set1(88.37626f));
    // Adding 1.5 * 2^23 rounds x*log2(e) to the nearest integer n and leaves n in the low mantissa bits of t:
    // no float->int conversion (which would be undefined for NaN in portable code).
    const vf magic = v_set1(12582912.0f);
    const vf t = v_fma(x, v_set1(1.44269504088896341f), magic);
    const vf n = v_sub(t, magic);
    // ln2 split in two: n * 0.693359375 is exact (9 significant bits), the second term carries the rest.
    vf r = v_fma(n, v_set1(-0.693359375f), x);
    r = v_fma(n, v_set1(2.12194440e-4f), r);
    vf p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), r);
    p = v_add(p, v_set1(1.0f));
    return v_mul(p, v_pow2_from_magic(t));
}

// Compile-time activation (for element-wise loops, dispatched once per call).
template <int kAct>
static GF_INLINE vf act_t(vf x) {
    const Act act = static_cast<Act>(kAct);
    if (act == Act::kReLU) return v_max(x, v_zero());
    if (act == Act::kReLU6) return v_min(v_max(x, v_zero()), v_set1(6.0f));
    if (act == Act::kHardSwish) {
        const vf r6 = v_min(v_max(v_add(x, v_set1(3.0f)), v_zero()), v_set1(6.0f));
        return v_mul(v_mul(x, r6), v_set1(1.0f / 6.0f));
    }
    if (act == Act::kHardSigmoid) {
        const vf r6 = v_min(v_max(v_add(x, v_set1(3.0f)), v_zero()), v_set1(6.0f));
        return v_mul(r6, v_set1(1.0f / 6.0f));
    }
    // The clamped exp keeps both forms finite: sigmoid(-inf) = 1/(1 + 2.4e38) ~ 4e-39, sigmoid(+inf) = 1.
    // (A reciprocal estimate + Newton step instead of the divide measured no faster: the exp dominates.)
    if (act == Act::kSiLU) return v_div(x, v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), x))));
    if (act == Act::kSigmoid) return v_div(v_set1(1.0f), v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), x))));
    return x;
}

// Run-time activation: one predictable switch per vector, for the post pass over stored tiles (act_rows).
static GF_INLINE vf act_apply(vf x, Act act) {
    switch (act) {
        case Act::kNone: return x;
        case Act::kReLU: return act_t<1>(x);
        case Act::kReLU6: return act_t<2>(x);
        case Act::kHardSwish: return act_t<3>(x);
        case Act::kHardSigmoid: return act_t<4>(x);
        case Act::kSiLU: return act_t<5>(x);
        case Act::kSigmoid: return act_t<6>(x);
    }
    return x;
}

// ---------------------------------------------------------------------------------------------------------------
// Pointwise (1x1 conv / linear): C = act(A * W^T + bias + R), a register-blocked GEMM.
//
// Packed weights: ceil(n / kPwNR) column panels; panel p holds kPwNR floats of bias, then k rows of kPwNR
// weights (row kk = W[p*kPwNR .. p*kPwNR+kPwNR)[kk]), zero-padded past n. The micro-tile loads one panel row per
// k step and broadcasts one A element per tile row, so A needs no packing (it is usually a channel slice of a
// wider activation buffer, read once per panel from L1/L2).

static size_t pointwise_packed_size(int32_t k, int32_t n) {
    const int64_t panels = div_up(n, kPwNR);
    return static_cast<size_t>(panels * kPwNR * (static_cast<int64_t>(k) + 1));
}

static void pack_pointwise(const float* w, const float* bias, int32_t k, int32_t n, float* packed) {
    const int32_t panels = div_up(n, kPwNR);
    for (int32_t p = 0; p < panels; ++p) {
        float* dst = packed + static_cast<int64_t>(p) * kPwNR * (static_cast<int64_t>(k) + 1);
        for (int32_t j = 0; j < kPwNR; ++j) {
            const int32_t col = p * kPwNR + j;
            dst[j] = (col < n && bias) ? bias[col] : 0.0f;
        }
        for (int32_t kk = 0; kk < k; ++kk) {
            float* row = dst + kPwNR + static_cast<int64_t>(kk) * kPwNR;
            for (int32_t j = 0; j < kPwNR; ++j) {
                const int32_t col = p * kPwNR + j;
                row[j] = col < n ? w[static_cast<int64_t>(col) * k + kk] : 0.0f;
            }
        }
    }
}

// Tile epilogues. The cheap activations are applied in registers before the single store: None, ReLU and ReLU6
// are one clamp (branch-free, two ops), HardSwish and HardSigmoid a few more ops. SiLU and Sigmoid (exp +
// divide, a long polynomial) run as a second, in-place pass over the just-stored tile, still in L1: that keeps
// the exp code out of every tile shape's epilogue (a large code-size and i-cache win; the extra pass over L1
// costs a fraction of the exp itself).
// kEpiNone and kEpiReLU skip the clamp's useless half: with K = 16 (GhostNet's first blocks) a tile's epilogue
// is a noticeable share of its FP work.
enum EpiKind : int32_t { kEpiClamp = 0, kEpiHardSwish = 1, kEpiHardSigmoid = 2, kEpiNone = 3, kEpiReLU = 4 };
struct Epi {
    vf lo, hi;      // ReLU6's clamp (ReLU uses lo only)
    int32_t kind;   // EpiKind
    bool post_pass; // SiLU / Sigmoid: apply `act` after the store
    Act act;
};
static GF_INLINE Epi epi_for(Act act) {
    const float inf = __builtin_inff();
    Epi e;
    e.lo = v_set1(act == Act::kReLU || act == Act::kReLU6 ? 0.0f : -inf);
    e.hi = v_set1(act == Act::kReLU6 ? 6.0f : inf);
    e.kind = act == Act::kHardSwish     ? kEpiHardSwish
             : act == Act::kHardSigmoid ? kEpiHardSigmoid
             : act == Act::kReLU        ? kEpiReLU
             : act == Act::kReLU6       ? kEpiClamp
                                        : kEpiNone;  // None, and the post-pass activations
    e.post_pass = act == Act::kSiLU || act == Act::kSigmoid;
    e.act = act;
    return e;
}
// One branch per tile, then straight-line code over the tile's accumulators.
template <int N>
static GF_INLINE void epi_apply(vf (&y)[N], const Epi& e) {
    if (e.kind == kEpiHardSwish) {
        GF_UNROLL for (int i = 0; i < N; ++i) y[i] = act_t<static_cast<int>(Act::kHardSwish)>(y[i]);
    } else if (e.kind == kEpiHardSigmoid) {
        GF_UNROLL for (int i = 0; i < N; ++i) y[i] = act_t<static_cast<int>(Act::kHardSigmoid)>(y[i]);
    } else if (e.kind == kEpiReLU) {
        GF_UNROLL for (int i = 0; i < N; ++i) y[i] = v_max(y[i], e.lo);
    } else if (e.kind == kEpiClamp) {
        GF_UNROLL for (int i = 0; i < N; ++i) y[i] = v_min(v_max(y[i], e.lo), e.hi);
    }
}

// act() in place over `rows` rows of `cols` floats (row stride `stride`): the post pass. The activation is a
// template argument, chosen once per call: a run-time switch per vector kept the exp's constants out of
// registers and measured 3x slower than the element-wise kernel.
template <int kAct>
static GF_INLINE void act_rows_t(float* p, int64_t stride, int32_t rows, int32_t cols) {
    const int32_t full = cols / kW * kW;
    const vmask m = v_mask(cols > full ? cols - full : kW);
    for (int32_t r = 0; r < rows; ++r, p += stride) {
        int32_t c = 0;
        for (; c < full; c += kW) v_store(p + c, act_t<kAct>(v_load(p + c)));
        if (c < cols) v_store_n(p + c, act_t<kAct>(v_load_n(p + c, m, cols - c)), m, cols - c);
    }
}
__attribute__((noinline)) static void act_rows(float* p, int64_t stride, int32_t rows, int32_t cols, Act act) {
    if (act == Act::kSiLU) return act_rows_t<static_cast<int>(Act::kSiLU)>(p, stride, rows, cols);
    if (act == Act::kSigmoid) return act_rows_t<static_cast<int>(Act::kSigmoid)>(p, stride, rows, cols);
    const int32_t full = cols / kW * kW;  // (the epilogues apply every other activation in registers)
    const vmask m = v_mask(cols > full ? cols - full : kW);
    for (int32_t r = 0; r < rows; ++r, p += stride) {
        int32_t c = 0;
        for (; c < full; c += kW) v_store(p + c, act_apply(v_load(p + c), act));
        if (c < cols) v_store_n(p + c, act_apply(v_load_n(p + c, m, cols - c), act), m, cols - c);
    }
}

// MR rows of NT vectors to dst (row stride `stride`), the last vector through `tail` unless `full`.
template <int MR, int NT>
static GF_INLINE void pw_store_tile(const vf (&acc)[MR * NT], float* dst, int64_t stride, bool full, vmask tail,
                                    int32_t last) {
    GF_UNROLL for (int r = 0; r < MR; ++r) {
        float* row = dst + r * stride;
        GF_UNROLL for (int v = 0; v < NT; ++v) {
            if (v == NT - 1 && !full)
                v_store_n(row + v * kW, acc[r * NT + v], tail, last);
            else
                v_store(row + v * kW, acc[r * NT + v]);
        }
    }
}

#if defined(GF_HAS_FMA_LANE)
static_assert(kW == 4, "the lane-multiplier pointwise step is written for 4-lane vectors");
// One K step of a pointwise tile whose A values sit in lane L of x[r] (tables with a by-lane FMA).
template <int L, int MR, int NV, int NT>
static GF_INLINE void pw_lane_step(vf (&acc)[MR * NT], const vf (&x)[MR], const float*& w, const float*& w2) {
    vf b[NT];
    GF_UNROLL for (int v = 0; v < NT; ++v) b[v] = v < NV ? v_load(w + v * kW) : v_load(w2 + (v - NV) * kW);
    w += kPwNR;
    if (NT > NV) w2 += kPwNR;
    GF_UNROLL for (int r = 0; r < MR; ++r) {
        GF_UNROLL for (int v = 0; v < NT; ++v) acc[r * NT + v] = v_fma_lane<L>(acc[r * NT + v], b[v], x[r]);
    }
}
#endif

// One MR x (NV * kW) tile over the full k: accumulators start at the bias (the panel's first row), the epilogue
// adds the residual, applies the activation and stores once. `cols` (1 .. NV * kW) columns exist; when the last
// vector is partial it is stored (and the residual read) through `tail`.
// NB = 1: the tile also takes the first vector of the next panel (`panel2`), the narrow last panel of n = 24, 40,
// 36, ...: one MR x (NV + 1) tile instead of a kPwMR x NV tile plus a kPwMR1 x 1 tile, which needs one broadcast
// per row for both (a one-vector tile loads about as many floats as it multiplies; with small k that bounds it).
// `raw` (nullable) also gets the sums before the residual and the activation.
// Not inlined: with the caller's loop state out of the way the k loop gets every general-purpose register for
// its row addresses (inlined, GCC spilled AVX-512's 8 row offsets into vector registers).
// KS: A's k-th element of a row at k * ks instead of k (PointwiseArgs::a_kstride).
template <int MR, int NV, int NB = 0, bool KS = false>
__attribute__((noinline)) static void pw_tile(const float* a, int64_t a_stride, int32_t k, const float* panel,
                                              const float* panel2, float* c, int64_t c_stride, const float* res,
                                              int64_t r_stride, float* raw, int64_t raw_stride, vmask tail,
                                              int32_t cols, const Epi& epi, int64_t ks = 1) {
    constexpr int NT = NV + NB;  // vectors per tile row
    vf acc[MR * NT];
    GF_UNROLL for (int v = 0; v < NT; ++v) {
        const vf b = v < NV ? v_load(panel + v * kW) : v_load(panel2 + (v - NV) * kW);
        GF_UNROLL for (int r = 0; r < MR; ++r) acc[r * NT + v] = b;
    }
    const float* ap[MR];
    GF_UNROLL for (int r = 0; r < MR; ++r) ap[r] = a + r * a_stride;
    const float* w = panel + kPwNR;
    const float* w2 = NB > 0 ? panel2 + kPwNR : nullptr;
    int32_t kk = 0;
#if defined(GF_HAS_FMA_LANE)
    // kW consecutive K values of each row in one load, each lane the multiplier of one K step's FMAs (A's K
    // values are contiguous unless KS).
    if constexpr (!KS) {
        for (; kk + kW <= k; kk += kW) {
            vf x[MR];
            GF_UNROLL for (int r = 0; r < MR; ++r) x[r] = v_load(ap[r] + kk);
            pw_lane_step<0, MR, NV, NT>(acc, x, w, w2);
            pw_lane_step<1, MR, NV, NT>(acc, x, w, w2);
            pw_lane_step<2, MR, NV, NT>(acc, x, w, w2);
            pw_lane_step<3, MR, NV, NT>(acc, x, w, w2);
        }
    }
#endif
#pragma GCC unroll 4
    for (; kk < k; ++kk) {
        vf b[NT];
        GF_UNROLL for (int v = 0; v < NT; ++v) b[v] = v < NV ? v_load(w + v * kW) : v_load(w2 + (v - NV) * kW);
        w += kPwNR;
        if (NB > 0) w2 += kPwNR;
        GF_UNROLL for (int r = 0; r < MR; ++r) {
            const vf x = v_bcast(ap[r] + (KS ? kk * ks : kk));
            GF_UNROLL for (int v = 0; v < NT; ++v) acc[r * NT + v] = v_fma(x, b[v], acc[r * NT + v]);
        }
    }
    const bool full = cols == NT * kW;
    const int32_t last = cols - (NT - 1) * kW;  // lanes of the last vector
    if (raw) pw_store_tile<MR, NT>(acc, raw, raw_stride, full, tail, last);
    if (res) {
        GF_UNROLL for (int r = 0; r < MR; ++r) {
            const float* rr = res + r * r_stride;
            GF_UNROLL for (int v = 0; v < NT; ++v) {
                const vf rv = (v == NT - 1 && !full) ? v_load_n(rr + v * kW, tail, last) : v_load(rr + v * kW);
                acc[r * NT + v] = v_add(acc[r * NT + v], rv);
            }
        }
    }
    epi_apply(acc, epi);
    pw_store_tile<MR, NT>(acc, c, c_stride, full, tail, last);
    if (epi.post_pass) act_rows(c, c_stride, MR, cols, epi.act);
}

// The tile for rows [m, m + rows) of one panel (and NB vectors of the next).
template <int NV, int NB, int MR, bool KS = false>
static GF_INLINE void pw_tile_rows(int32_t rows, const PointwiseArgs& args, int64_t m, const float* panel,
                                   const float* panel2, int32_t n0, vmask tail, int32_t cols, const Epi& epi) {
    if constexpr (MR >= 1) {
        if (rows == MR) {
            pw_tile<MR, NV, NB, KS>(args.a + m * args.a_stride, args.a_stride, args.k, panel, panel2,
                                    args.c + m * args.c_stride + n0, args.c_stride,
                                    args.residual ? args.residual + m * args.r_stride + n0 : nullptr, args.r_stride,
                                    args.raw ? args.raw + m * args.raw_stride + n0 : nullptr, args.raw_stride, tail,
                                    cols, epi, args.a_kstride);
        } else {
            pw_tile_rows<NV, NB, MR - 1, KS>(rows, args, m, panel, panel2, n0, tail, cols, epi);
        }
    }
}

// Rows per tile: a one-vector tail panel gets taller tiles (kPwMR1 rows), so that it still has enough
// independent accumulators to cover the FMA latency; a tile NV + 1 vectors wide keeps kPwMR x kPwNV accumulators.
static constexpr int kPwMRWide = kPwMR * kPwNV / (kPwNV + 1);
template <int NV, int NB>
static constexpr int pw_mr() {
    return NB > 0 ? kPwMRWide : NV == 1 ? kPwMR1 : kPwMR;
}
static constexpr int64_t pw_row_align() {  // lcm(kPwMR, kPwMR1, kPwMRWide): row blocks split into whole tiles
    int64_t l = kPwMR;
    while (l % kPwMR1 != 0 || l % kPwMRWide != 0) l += kPwMR;
    return l;
}

// The next weight panel, prefetched a share per row tile while this panel's tiles compute, when panels are
// small (up to 16 KiB: k up to 255) and there are enough row tiles to hide the fetch behind (40 rows or more: the
// 7x7 maps). Such a layer's weights are not in any cache when it starts, and the first tile of every panel
// otherwise waits on each weight line it loads: the hardware prefetcher hardly gets going within a panel that
// short. Kernel alone, cold weights: 49 x 160 -> 480 and -> 960 took 0.94-0.95x the time (paired); with warm
// weights 1.03x, and on 21- and 28-row blocks 0.99-1.08x, hence the row floor; 61 KiB panels (k = 960) 1.05-1.07x.
static constexpr int64_t kPrefetchPanelFloats = 4096;
static constexpr int64_t kPrefetchMinRows = 40;
struct PanelPrefetch {
    const char* p;
    int64_t left;  // bytes
    int64_t per;   // bytes per tile
    GF_INLINE void step() {
        const int64_t n = per < left ? per : left;
        for (int64_t o = 0; o < n; o += 64) __builtin_prefetch(p + o, 0, 3);
        p += n, left -= n;
    }
};

template <int NV, int NB, bool KS = false>
static void pw_panel_rows(const PointwiseArgs& args_ref, int64_t m0, int64_t m1, const float* panel,
                          const float* panel2, int32_t n0, vmask tail, int32_t cols, const Epi& epi,
                          const float* next = nullptr, int64_t next_floats = 0) {
    const PointwiseArgs args = args_ref;  // a local copy: see DwCtx
    constexpr int MR = pw_mr<NV, NB>();
    const int64_t tiles = (m1 - m0 + MR - 1) / MR;
    const int64_t next_bytes = next ? next_floats * static_cast<int64_t>(sizeof(float)) : 0;
    PanelPrefetch pf{reinterpret_cast<const char*>(next), next_bytes, (next_bytes / tiles + 63) / 64 * 64};
    int64_t m = m0;
    // A short remainder (fewer than MR / 2 rows, e.g. 1 of 49 rows) would run as a thin tile with too few
    // independent accumulators to cover the FMA latency: the last full tile and the remainder run as two
    // tiles of about (MR + rem) / 2 rows instead.
    const int64_t rem = (m1 - m0) % MR;
    const int64_t full_end = (rem > 0 && rem < MR / 2 && m1 - m0 > MR) ? m1 - rem - MR : m1;
    for (; m + MR <= full_end; m += MR) {
        pf.step();
        pw_tile<MR, NV, NB, KS>(args.a + m * args.a_stride, args.a_stride, args.k, panel, panel2,
                                args.c + m * args.c_stride + n0, args.c_stride,
                                args.residual ? args.residual + m * args.r_stride + n0 : nullptr, args.r_stride,
                                args.raw ? args.raw + m * args.raw_stride + n0 : nullptr, args.raw_stride, tail,
                                cols, epi, args.a_kstride);
    }
    pf.step();
    if (full_end < m1) {  // the rebalanced pair: (MR + rem + 1) / 2 rows, then the rest
        const int32_t first = static_cast<int32_t>((m1 - m + 1) / 2);
        pw_tile_rows<NV, NB, MR - 1, KS>(first, args, m, panel, panel2, n0, tail, cols, epi);
        m += first;
    }
    if (m < m1)
        pw_tile_rows<NV, NB, MR - 1, KS>(static_cast<int32_t>(m1 - m), args, m, panel, panel2, n0, tail, cols, epi);
}

// One row (M = 1: a linear layer at batch 1, an SE fully-connected layer) against kGemvPanels full panels at
// once. A single row does one FMA per weight loaded, so this is bound by how fast the weights stream in (the
// classifier and conv_head of GhostNet are ~5 MB each, mostly outside L2). One panel at a time is a single
// sequential stream and reaches ~17 GB/s here; four panels are four concurrent streams (~2x that), and their
// 4 * kPwNV independent accumulators also cover the FMA latency that a one-panel row tile cannot.
static constexpr int kGemvPanels = 4;
__attribute__((noinline)) static void pw_gemv_panels(const float* a, int32_t k, const float* panel,
                                                     int64_t panel_stride, float* c, const float* res,
                                                     const Epi& epi) {
    constexpr int N = kGemvPanels * kPwNV;
    vf acc[N];
    const float* w[kGemvPanels];
    GF_UNROLL for (int p = 0; p < kGemvPanels; ++p) {
        w[p] = panel + p * panel_stride;
        GF_UNROLL for (int v = 0; v < kPwNV; ++v) acc[p * kPwNV + v] = v_load(w[p] + v * kW);
        w[p] += kPwNR;
    }
#pragma GCC unroll 2
    for (int32_t kk = 0; kk < k; ++kk) {
        const vf x = v_bcast(a + kk);
        GF_UNROLL for (int p = 0; p < kGemvPanels; ++p) {
            GF_UNROLL for (int v = 0; v < kPwNV; ++v)
                acc[p * kPwNV + v] = v_fma(x, v_load(w[p] + v * kW), acc[p * kPwNV + v]);
            w[p] += kPwNR;
        }
    }
    if (res) GF_UNROLL for (int i = 0; i < N; ++i) acc[i] = v_add(acc[i], v_load(res + i * kW));
    epi_apply(acc, epi);
    GF_UNROLL for (int i = 0; i < N; ++i) v_store(c + i * kW, acc[i]);
    if (epi.post_pass) act_rows(c, 0, 1, N * kW, epi.act);
}

template <bool KS>
static void pointwise_blocks(const PointwiseArgs& args, int64_t m_begin, int64_t m_end, int32_t n_begin,
                             int32_t n_end, const Epi& epi);

static void pointwise(const PointwiseArgs& args, int64_t m_begin, int64_t m_end, int32_t n_begin, int32_t n_end) {
    if (m_begin >= m_end || n_begin >= n_end) return;
    const Epi epi = epi_for(args.act);
    if (args.a_kstride != 1) return pointwise_blocks<true>(args, m_begin, m_end, n_begin, n_end, epi);
    const int64_t panel_stride = static_cast<int64_t>(kPwNR) * (static_cast<int64_t>(args.k) + 1);
    if (m_end - m_begin == 1 && !args.raw) {
        // A single row: groups of full panels as concurrent weight streams, the rest below.
        const int64_t m = m_begin;
        for (; n_begin + kGemvPanels * kPwNR <= n_end; n_begin += kGemvPanels * kPwNR)
            pw_gemv_panels(args.a + m * args.a_stride, args.k, args.packed + (n_begin / kPwNR) * panel_stride,
                           panel_stride, args.c + m * args.c_stride + n_begin,
                           args.residual ? args.residual + m * args.r_stride + n_begin : nullptr, epi);
        if (n_begin >= n_end) return;
    }
    pointwise_blocks<false>(args, m_begin, m_end, n_begin, n_end, epi);
}

template <bool KS>
static void pointwise_blocks(const PointwiseArgs& args, int64_t m_begin, int64_t m_end, int32_t n_begin,
                             int32_t n_end, const Epi& epi) {
    const int64_t panel_stride = static_cast<int64_t>(kPwNR) * (static_cast<int64_t>(args.k) + 1);
    // Rows per block: the block's A rows (up to ~256 KiB) stay in L2 while every panel of [n_begin, n_end)
    // sweeps over them; each panel (k x kPwNR floats) stays in L1/L2 across the block's row tiles. Every block
    // streams all the weights once, so the rows split into as few blocks as the budget allows, of equal size:
    // with 128 KiB blocks a 7x7 map with k = 1024 (MobileNetV1's last 1x1) ran as blocks of 24, 24 and 1 rows,
    // three passes over 4 MiB of weights, the last one in single-row tiles.
    const int64_t rows = m_end - m_begin;
    const int64_t row_bytes = 4 * (static_cast<int64_t>(args.k) + 1);
    const int64_t blocks = (rows * row_bytes + 256 * 1024 - 1) / (256 * 1024);
    int64_t mc = (rows + blocks - 1) / blocks;
    mc = (mc + pw_row_align() - 1) / pw_row_align() * pw_row_align();
    for (int64_t m0 = m_begin; m0 < m_end; m0 += mc) {
        const int64_t m1 = lmin(m0 + mc, m_end);
        for (int32_t n0 = n_begin; n0 < n_end; n0 += kPwNR) {
            const float* panel = args.packed + static_cast<int64_t>(n0 / kPwNR) * panel_stride;
            const int32_t cols = imin(kPwNR, n_end - n0);
            const int32_t nv = div_up(cols, kW);  // narrow tail panels skip their all-padding vectors
            const int32_t rest = n_end - n0 - kPwNR;  // columns after this panel
            if (nv == kPwNV && rest > 0 && rest <= kW) {
                // A full panel followed by a last panel of one vector: both in one wider tile.
                pw_panel_rows<kPwNV, 1, KS>(args, m0, m1, panel, panel + panel_stride, n0, v_mask(rest),
                                            kPwNR + rest, epi);
                break;
            }
            const int32_t last = cols - (nv - 1) * kW;
            const vmask tail = v_mask(last);
            const bool prefetch = rest > 0 && panel_stride <= kPrefetchPanelFloats && m1 - m0 >= kPrefetchMinRows;
            const float* next = prefetch ? panel + panel_stride : nullptr;
            if (nv == kPwNV) {
                pw_panel_rows<kPwNV, 0, KS>(args, m0, m1, panel, nullptr, n0, tail, cols, epi, next, panel_stride);
            } else if (nv == 1) {
                pw_panel_rows<1, 0, KS>(args, m0, m1, panel, nullptr, n0, tail, cols, epi);
            } else {
                if constexpr (kPwNV == 3) pw_panel_rows<2, 0, KS>(args, m0, m1, panel, nullptr, n0, tail, cols, epi);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Depthwise convolution, vectorized across channels.
//
// Packed weights: ceil(c / kW) channel tiles; tile t holds kW floats of bias, then k*k taps of kW floats
// (tap i*k+j = w[t*kW .. t*kW+kW)[i][j]), zero-padded past c.

static size_t depthwise_packed_size(int32_t channels, int32_t kernel) {
    return static_cast<size_t>(div_up(channels, kW)) * kW * (static_cast<size_t>(kernel) * kernel + 1);
}

static void pack_depthwise(const float* w, const float* bias, int32_t channels, int32_t kernel, float* packed) {
    const int32_t taps = kernel * kernel;
    const int32_t tiles = div_up(channels, kW);
    for (int32_t t = 0; t < tiles; ++t) {
        float* dst = packed + static_cast<int64_t>(t) * kW * (taps + 1);
        for (int32_t l = 0; l < kW; ++l) {
            const int32_t c = t * kW + l;
            dst[l] = (c < channels && bias) ? bias[c] : 0.0f;
            for (int32_t tap = 0; tap < taps; ++tap)
                dst[kW + tap * kW + l] = c < channels ? w[static_cast<int64_t>(c) * taps + tap] : 0.0f;
        }
    }
}

// Geometry of one output row shared by the depthwise, conv and pool kernels: valid kernel rows [i_lo, i_hi) and
// the interior output columns [x_lo, x_hi) whose whole window lies inside the input (no bounds checks there).
struct RowGeom {
    int32_t iy0, i_lo, i_hi;
};
static GF_INLINE RowGeom row_geom(int32_t y, int32_t stride, int32_t pad, int32_t kernel, int32_t in_h) {
    RowGeom g;
    g.iy0 = y * stride - pad;
    g.i_lo = imax(0, -g.iy0);
    g.i_hi = imin(kernel, in_h - g.iy0);
    return g;
}
static GF_INLINE void interior_cols(int32_t out_w, int32_t in_w, int32_t stride, int32_t pad, int32_t kernel,
                                    int32_t* x_lo, int32_t* x_hi) {
    const int32_t lo = div_up(pad, stride);
    const int32_t room = in_w + pad - kernel;  // last interior x satisfies x*stride <= room
    const int32_t hi = room < 0 ? 0 : imin(out_w, room / stride + 1);
    *x_lo = imin(lo, out_w);
    *x_hi = hi < *x_lo ? *x_lo : hi;
}

// XB consecutive output pixels of one channel tile, kernel size KS and stride S known at compile time.
// Each input vector of a kernel row is loaded once and fed to every output of the block that uses it (with
// stride 1 and k = 3 that is 10 loads for 24 FMAs at XB = 8, instead of 24), and the row's KS weight vectors
// stay in registers. kFullRows: all KS kernel rows are inside the input (the row loop is unrolled); otherwise
// rows [i_lo, i_hi). kClip: some input columns of the window are padding (blocks at the row's ends), and are
// skipped: no load ever touches a position outside the input. rows[i]: input row g.iy0 + i (i in [i_lo, i_hi)),
// `ch` the tile's first channel. `res_px` (nullable): the residual at the block's first output pixel, added
// before the activation.
template <int XB, int KS, int S, int kTail, bool kFullRows, bool kClip>
static GF_INLINE void dw_block(const float* const* rows, int32_t ch, int64_t in_stride, int32_t in_w,
                               const RowGeom& g, int32_t ix0, const float* wt, float* out_px, int64_t out_stride,
                               const float* res_px, int64_t r_stride, vmask m, int32_t cols, const Epi& epi) {
    constexpr int kCols = (XB - 1) * S + KS;  // input columns the block reads
    vf acc[XB];
    const vf bias = v_load(wt);
    GF_UNROLL for (int o = 0; o < XB; ++o) acc[o] = bias;
    int32_t t_lo = 0, t_hi = kCols;
    if (kClip) {
        t_lo = imax(0, -ix0);
        t_hi = imin(kCols, in_w - ix0);
    }
    auto kernel_row = [&](int32_t i) __attribute__((always_inline)) {
        vf w[KS];
        GF_UNROLL for (int j = 0; j < KS; ++j) w[j] = v_load(wt + kW + (i * KS + j) * kW);
        // One pointer bumped column by column (valid columns are contiguous, from t_lo): with run-time strides,
        // precomputed offsets for every unrolled column (30 for k = 3, XB = 8) would not fit the general-purpose
        // registers and get spilled.
        const float* px = rows[i] + ch + static_cast<int64_t>(ix0 + t_lo) * in_stride;
        GF_UNROLL for (int t = 0; t < kCols; ++t) {
            if (kClip && (t < t_lo || t >= t_hi)) continue;
            const vf v = v_load_t<kTail>(px, m);
            px += in_stride;
            GF_UNROLL for (int j = 0; j < KS; ++j) {
                const int d = t - j;  // d = o * S: output o reads input column t through tap j
                if (d >= 0 && d % S == 0 && d / S < XB) acc[d / S] = v_fma(v, w[j], acc[d / S]);
            }
        }
    };
    if (kFullRows) {
        GF_UNROLL for (int i = 0; i < KS; ++i) kernel_row(i);
    } else {
        for (int32_t i = g.i_lo; i < g.i_hi; ++i) kernel_row(i);
    }
    if (res_px) GF_UNROLL for (int o = 0; o < XB; ++o) acc[o] = v_add(acc[o], v_load_t<kTail>(res_px + o * r_stride, m));
    epi_apply(acc, epi);
    GF_UNROLL for (int o = 0; o < XB; ++o) v_store_t<kTail>(out_px + o * out_stride, acc[o], m);
    if (epi.post_pass) act_rows(out_px, out_stride, XB, cols, epi.act);
}

// What the row loops need, copied out of DepthwiseArgs into a local: the vector stores (may_alias types) would
// otherwise force every field to be reloaded from the caller's struct after each store.
struct DwCtx {
    const float* packed;
    const float* res;  // nullable
    int64_t in_stride, out_stride, r_stride;
    int32_t in_w, pad, out_w, full_tiles, rem;
    vmask m;
    Epi epi;
};

// All channel tiles of `blocks` consecutive blocks of XB pixels, the first at output column x. The tile loop is
// innermost so that a block's input window (a few pixels x all channels) is reused from L1 by every tile, and
// the address arithmetic of the window is computed once for all tiles. A row's interior blocks come in one call:
// with one call per block, the call (and its prologue) took a tenth of the time of 8- and 12-channel depthwise
// (0.90-0.95x the time in one call, 112x112x8 and 56x56x12, kernel alone, paired).
template <int XB, int KS, int S, bool kFullRows, bool kClip>
__attribute__((noinline)) static void dw_block_tiles(const DwCtx& c, const RowGeom& g, const float* const* rows,
                                                     int32_t x, float* out_row, const float* res_row,
                                                     int32_t blocks = 1) {
    for (int32_t blk = 0; blk < blocks; ++blk, x += XB) {
        const int32_t ix0 = x * S - c.pad;
        float* out_px = out_row + static_cast<int64_t>(x) * c.out_stride;
        const float* res_px = res_row ? res_row + static_cast<int64_t>(x) * c.r_stride : nullptr;
        constexpr int32_t kTileStride = kW * (KS * KS + 1);
        const float* wt = c.packed;
        int32_t t = 0;
        for (; t < c.full_tiles; ++t, wt += kTileStride)
            dw_block<XB, KS, S, kTailNone, kFullRows, kClip>(rows, t * kW, c.in_stride, c.in_w, g, ix0, wt,
                                                             out_px + t * kW, c.out_stride,
                                                             res_px ? res_px + t * kW : nullptr, c.r_stride, c.m, kW,
                                                             c.epi);
        if (c.rem == kW / 2)
            dw_block<XB, KS, S, kTailHalf, kFullRows, kClip>(rows, t * kW, c.in_stride, c.in_w, g, ix0, wt,
                                                             out_px + t * kW, c.out_stride,
                                                             res_px ? res_px + t * kW : nullptr, c.r_stride, c.m,
                                                             c.rem, c.epi);
        else if (c.rem)
            dw_block<XB, KS, S, kTailMasked, kFullRows, kClip>(rows, t * kW, c.in_stride, c.in_w, g, ix0, wt,
                                                               out_px + t * kW, c.out_stride,
                                                               res_px ? res_px + t * kW : nullptr, c.r_stride, c.m,
                                                               c.rem, c.epi);
    }
}

// One output block of XB pixels at column x, clipped only if its window reaches into the left/right padding.
template <int XB, int KS, int S, bool kFullRows>
static GF_INLINE void dw_block_any(const DwCtx& c, const RowGeom& g, const float* const* rows, int32_t x,
                                   float* out_row, const float* res_row, int32_t x_lo, int32_t x_hi) {
    if (x >= x_lo && x + XB <= x_hi)
        dw_block_tiles<XB, KS, S, kFullRows, false>(c, g, rows, x, out_row, res_row);
    else
        dw_block_tiles<XB, KS, S, kFullRows, true>(c, g, rows, x, out_row, res_row);
}

// One output row in blocks of kDwXB pixels (rows narrower than that: 4). The border pixels ride in the first
// and last blocks (their padding columns skipped) instead of taking a slow one-pixel path. A row that is not a
// whole number of blocks ends with a block that overlaps the previous one (it recomputes a few outputs, which
// is harmless because the output never aliases the input it reads): narrow blocks have too few independent
// accumulators for the FMA latency, and measured 2x slower per pixel on 14- and 7-pixel rows.
template <int XB, int KS, int S, bool kFullRows>
static GF_INLINE void dw_row_blocks(const DwCtx& c, const RowGeom& g, const float* const* rows, float* out_row,
                                    const float* res_row, int32_t x_lo, int32_t x_hi) {
    int32_t x = 0;
    while (x + XB <= c.out_w) {
        if (x >= x_lo && x + XB <= x_hi) {  // a run of interior blocks in one call
            const int32_t run = (imin(x_hi, c.out_w) - x) / XB;
            dw_block_tiles<XB, KS, S, kFullRows, false>(c, g, rows, x, out_row, res_row, run);
            x += run * XB;
        } else {
            dw_block_tiles<XB, KS, S, kFullRows, true>(c, g, rows, x, out_row, res_row);
            x += XB;
        }
    }
    if (x < c.out_w) dw_block_any<XB, KS, S, kFullRows>(c, g, rows, c.out_w - XB, out_row, res_row, x_lo, x_hi);
}
template <int KS, int S, bool kFullRows>
static void dw_row(const DwCtx& ctx, const RowGeom& geom, const float* const* rows, float* out_row,
                   const float* res_row, int32_t x_lo, int32_t x_hi) {
    const DwCtx c = ctx;  // locals: see DwCtx
    const RowGeom g = geom;
    // Rows of 7, 14 and 28 pixels (the 7x7, 14x14 and 28x28 maps of every model in the zoo) in blocks of 7, so
    // that no block overlaps another: a block of 7 instead of two overlapping blocks of 4 ran 3x3 and 5x5
    // depthwise over 7x7 with 80-960 channels in 0.64-0.69x the time (kernel alone, paired), a 5x5 stride-2 one
    // from 14x14 in 0.77x; 14- and 28-pixel rows took 0.90-0.96x the time of blocks of 8 whose last block
    // recomputes 2 or 4 pixels (14x14 and 28x28 with 20-336 channels, 3x3 and 5x5, stride 1 and 2).
    if (kDwXB == 8 && c.out_w % 8 != 0 && c.out_w % 7 == 0)
        return dw_row_blocks<7, KS, S, kFullRows>(c, g, rows, out_row, res_row, x_lo, x_hi);
    if (c.out_w >= kDwXB) return dw_row_blocks<kDwXB, KS, S, kFullRows>(c, g, rows, out_row, res_row, x_lo, x_hi);
    if (kDwXB > 4 && c.out_w >= 4)
        return dw_row_blocks<4, KS, S, kFullRows>(c, g, rows, out_row, res_row, x_lo, x_hi);
    for (int32_t x = 0; x < c.out_w; ++x)
        dw_block_any<1, KS, S, kFullRows>(c, g, rows, x, out_row, res_row, x_lo, x_hi);
}

// Row addresses of a depthwise's input and output planes, plain or ring buffers (DepthwiseArgs::in_ring).
static GF_INLINE const float* dw_in_row(const DepthwiseArgs& a, int32_t r) {
    return a.in + static_cast<int64_t>(a.in_ring > 0 ? r % a.in_ring : r) * a.in_w * a.in_stride;
}
static GF_INLINE float* dw_out_row(const DepthwiseArgs& a, int32_t y) {
    return a.out + static_cast<int64_t>(a.out_ring > 0 ? y % a.out_ring : y) * a.out_w * a.out_stride;
}

template <int KS, int S>
static void dw_rows(const DepthwiseArgs& a, int32_t y_begin, int32_t y_end) {
    DwCtx c;
    c.packed = a.packed;
    c.in_stride = a.in_stride;
    c.out_stride = a.out_stride;
    c.res = a.residual;
    c.r_stride = a.r_stride;
    c.in_w = a.in_w;
    c.pad = a.pad;
    c.out_w = a.out_w;
    c.full_tiles = a.channels / kW;
    c.rem = a.channels - c.full_tiles * kW;
    c.m = v_mask(c.rem ? c.rem : kW);
    c.epi = epi_for(a.act);
    const int32_t in_h = a.in_h, out_w = a.out_w;
    int32_t x_lo = 0, x_hi = 0;
    interior_cols(a.out_w, a.in_w, S, a.pad, KS, &x_lo, &x_hi);
    for (int32_t y = y_begin; y < y_end; ++y) {
        const RowGeom g = row_geom(y, S, c.pad, KS, in_h);
        const float* rows[KS];
        for (int32_t i = g.i_lo; i < g.i_hi; ++i) rows[i] = dw_in_row(a, g.iy0 + i);
        float* out_row = dw_out_row(a, y);
        const float* res_row = c.res ? c.res + static_cast<int64_t>(y) * out_w * c.r_stride : nullptr;
        if (g.i_lo == 0 && g.i_hi == KS)
            dw_row<KS, S, true>(c, g, rows, out_row, res_row, x_lo, x_hi);
        else
            dw_row<KS, S, false>(c, g, rows, out_row, res_row, x_lo, x_hi);
    }
}

// Kernel sizes / strides without a specialisation: one pixel at a time, taps clipped, run-time loops.
template <int kTail>
static GF_INLINE void dw_pixel(const DepthwiseArgs& a, const RowGeom& g, int32_t x, int32_t c0, const float* wt,
                               float* out, const float* res, vmask m, int32_t cols, const Epi& epi) {
    const int32_t k = a.kernel;
    const int32_t ix0 = x * a.stride - a.pad;
    const int32_t j_lo = imax(0, -ix0), j_hi = imin(k, a.in_w - ix0);
    vf acc[1] = {v_load(wt)};
    for (int32_t i = g.i_lo; i < g.i_hi; ++i) {
        const float* px = dw_in_row(a, g.iy0 + i) + static_cast<int64_t>(ix0 + j_lo) * a.in_stride + c0;
        const float* w = wt + kW + (i * k + j_lo) * kW;
        for (int32_t j = j_lo; j < j_hi; ++j, px += a.in_stride, w += kW)
            acc[0] = v_fma(v_load_t<kTail>(px, m), v_load(w), acc[0]);
    }
    if (res) acc[0] = v_add(acc[0], v_load_t<kTail>(res, m));
    epi_apply(acc, epi);
    v_store_t<kTail>(out, acc[0], m);
    if (epi.post_pass) act_rows(out, 0, 1, cols, epi.act);
}

static void dw_rows_any(const DepthwiseArgs& args, int32_t y_begin, int32_t y_end) {
    const DepthwiseArgs a = args;  // a local copy: see DwCtx
    const int32_t full_tiles = a.channels / kW;
    const int32_t rem = a.channels - full_tiles * kW;
    const vmask m = v_mask(rem ? rem : kW);
    const Epi epi = epi_for(a.act);
    const int32_t tile_stride = kW * (a.kernel * a.kernel + 1);
    for (int32_t y = y_begin; y < y_end; ++y) {
        const RowGeom g = row_geom(y, a.stride, a.pad, a.kernel, a.in_h);
        float* out_row = dw_out_row(a, y);
        for (int32_t x = 0; x < a.out_w; ++x) {
            float* out_px = out_row + static_cast<int64_t>(x) * a.out_stride;
            const float* res_px =
                a.residual ? a.residual + (static_cast<int64_t>(y) * a.out_w + x) * a.r_stride : nullptr;
            int32_t t = 0;
            for (; t < full_tiles; ++t)
                dw_pixel<kTailNone>(a, g, x, t * kW, a.packed + static_cast<int64_t>(t) * tile_stride, out_px + t * kW,
                                    res_px ? res_px + t * kW : nullptr, m, kW, epi);
            if (rem)
                dw_pixel<kTailMasked>(a, g, x, t * kW, a.packed + static_cast<int64_t>(t) * tile_stride,
                                      out_px + t * kW, res_px ? res_px + t * kW : nullptr, m, rem, epi);
        }
    }
}

static void depthwise(const DepthwiseArgs& a, int32_t y_begin, int32_t y_end) {
    if (y_begin >= y_end || a.channels <= 0) return;
    if (a.kernel == 3 && a.stride == 1) return dw_rows<3, 1>(a, y_begin, y_end);
    if (a.kernel == 3 && a.stride == 2) return dw_rows<3, 2>(a, y_begin, y_end);
    if (a.kernel == 5 && a.stride == 1) return dw_rows<5, 1>(a, y_begin, y_end);
    if (a.kernel == 5 && a.stride == 2) return dw_rows<5, 2>(a, y_begin, y_end);
#if defined(GF_DW_K7_ROWS)
    // 7x7 in row blocks too where the register file holds 8 accumulators, 7 weights and an input (32 registers).
    if (a.kernel == 7 && a.stride == 1) return dw_rows<7, 1>(a, y_begin, y_end);
    if (a.kernel == 7 && a.stride == 2) return dw_rows<7, 2>(a, y_begin, y_end);
#endif
    dw_rows_any(a, y_begin, y_end);
}

// ---------------------------------------------------------------------------------------------------------------
// Dense k x k convolution (the stems): an implicit-im2col GEMM, vectorized over output channels. The input is
// NHWC, or planar NCHW (in_stride 1, in_c_stride h * w): the engine's stem reads the caller's NCHW image
// directly instead of converting it first (a 600 KB round trip through memory at 224 x 224).
//
// Packed weights: ceil(out_c / kConvNR) panels; panel p holds kConvNR floats of bias, then k*k*in_c rows of
// kConvNR weights, row (i*k + j)*in_c + ic = w[p*kConvNR .. +kConvNR)[ic][i][j], zero-padded past out_c. The
// micro-tile broadcasts one input value per output pixel and FMAs it into kConvNV vectors of output channels.

static size_t conv_packed_size(int32_t in_c, int32_t out_c, int32_t kernel) {
    const int64_t rows = static_cast<int64_t>(kernel) * kernel * in_c;
    return static_cast<size_t>(div_up(out_c, kConvNR)) * kConvNR * static_cast<size_t>(rows + 1);
}

static void pack_conv(const float* w, const float* bias, int32_t in_c, int32_t out_c, int32_t kernel, float* packed) {
    const int64_t rows = static_cast<int64_t>(kernel) * kernel * in_c;
    const int32_t panels = div_up(out_c, kConvNR);
    for (int32_t p = 0; p < panels; ++p) {
        float* dst = packed + p * kConvNR * (rows + 1);
        for (int32_t l = 0; l < kConvNR; ++l) {
            const int32_t oc = p * kConvNR + l;
            dst[l] = (oc < out_c && bias) ? bias[oc] : 0.0f;
            for (int32_t i = 0; i < kernel; ++i)
                for (int32_t j = 0; j < kernel; ++j)
                    for (int32_t ic = 0; ic < in_c; ++ic) {
                        const int64_t row = (static_cast<int64_t>(i) * kernel + j) * in_c + ic;
                        dst[kConvNR + row * kConvNR + l] =
                            oc < out_c ? w[((static_cast<int64_t>(oc) * in_c + ic) * kernel + i) * kernel + j] : 0.0f;
                    }
        }
    }
}

// What the conv loops need, copied out of ConvArgs into a local (see DwCtx).
struct ConvCtx {
    const float* in;
    int64_t in_stride, in_c_stride, in_row_stride, out_stride, px_step;
    int32_t in_w, in_c, kernel, stride, pad, out_w;
    Epi epi;
};

// XB output pixels (consecutive columns from x) x NV vectors of output channels. KS, IC > 0: kernel size and
// input channels known at compile time (the stems: 3 x 3 x 3), every kernel column inside the input, all taps
// unrolled; otherwise run-time loops over kernel columns [j_lo, j_hi) (clipped for border pixels).
// NB = 1: the tile also takes the first vector of the next panel (`panel2`): 24 or 20 output channels (the
// ShuffleNet and GhostNet 1.3x stems) in one pass of NV + 1 vectors, instead of a second pass one vector wide
// whose few accumulators cannot cover the FMA latency and which broadcasts every input value again.
// kS, kInStride > 0 (the stems, with KS and IC): the stride and the input's pixel stride (1: planar NCHW, 3:
// NHWC) known at compile time, so that every input address of the tile is one of IC channel-plane pointers plus a
// constant. With run-time strides GCC kept the 54 addresses of a 6-pixel 3x3x3 tile on the stack and loaded one
// before every broadcast: two loads per FMA pair instead of one.
template <int XB, int NV, int KS, int IC, int NB = 0, int kS = 0, int kInStride = 0>
static GF_INLINE void conv_tile(const ConvCtx& c, const RowGeom& g, int32_t x, int32_t j_lo, int32_t j_hi,
                                const float* panel, const float* panel2, float* out_px, vmask tail, int32_t cols) {
    constexpr int NT = NV + NB;
    vf acc[XB * NT];
    GF_UNROLL for (int v = 0; v < NT; ++v) {
        const vf b = v_load(v < NV ? panel + v * kW : panel2 + (v - NV) * kW);
        GF_UNROLL for (int o = 0; o < XB; ++o) acc[o * NT + v] = b;
    }
    const int32_t in_c = IC > 0 ? IC : c.in_c;
    const int32_t k = KS > 0 ? KS : c.kernel;
    if (KS > 0) j_lo = 0, j_hi = KS;
    const int32_t ix0 = x * c.stride - c.pad;
    // One FMA step: input channel values of the XB pixels (one broadcast each) times NV (+ NB) weight vectors.
    const int64_t w2_off = NB > 0 ? panel2 - panel : 0;  // the same row of the next panel
    auto step = [&](const float* const* px, int64_t off, const float* w) __attribute__((always_inline)) {
        vf b[NT];
        GF_UNROLL for (int v = 0; v < NT; ++v) b[v] = v_load(v < NV ? w + v * kW : w + w2_off + (v - NV) * kW);
        GF_UNROLL for (int o = 0; o < XB; ++o) {
            const vf xv = v_bcast(px[o] + off);
            GF_UNROLL for (int v = 0; v < NT; ++v) acc[o * NT + v] = v_fma(xv, b[v], acc[o * NT + v]);
        }
    };
    if constexpr (KS > 0 && IC > 0 && kS > 0 && kInStride > 0) {
        const int64_t cs = kInStride == 1 ? c.in_c_stride : 1;  // floats from one input channel to the next
        for (int32_t i = g.i_lo; i < g.i_hi; ++i) {
            const float* row = c.in + static_cast<int64_t>(g.iy0 + i) * c.in_row_stride + static_cast<int64_t>(ix0) * kInStride;
            const float* plane[IC];
            GF_UNROLL for (int ic = 0; ic < IC; ++ic) plane[ic] = row + ic * cs;
            const float* w = panel + kConvNR + static_cast<int64_t>(i) * KS * IC * kConvNR;
            GF_UNROLL for (int j = 0; j < KS; ++j) {
                GF_UNROLL for (int ic = 0; ic < IC; ++ic) {
                    const float* wr = w + (j * IC + ic) * kConvNR;
                    vf b[NT];
                    GF_UNROLL for (int v = 0; v < NT; ++v) b[v] = v_load(v < NV ? wr + v * kW : wr + w2_off + (v - NV) * kW);
                    // Opaque to the optimizer: with stride 2, taps j and j + 2 of neighbouring pixels read the same
                    // input, and GCC kept those broadcasts in stack spills (a store and a reload each) instead of
                    // broadcasting again.
                    const float* col = plane[ic] + j * kInStride;
                    __asm__("" : "+r"(col));
                    GF_UNROLL for (int o = 0; o < XB; ++o) {
                        const vf xv = v_bcast(col + o * kS * kInStride);
                        GF_UNROLL for (int v = 0; v < NT; ++v) acc[o * NT + v] = v_fma(xv, b[v], acc[o * NT + v]);
                    }
                }
            }
        }
    } else {
        for (int32_t i = g.i_lo; i < g.i_hi; ++i) {
            // A pointer per output pixel at its first valid tap of this kernel row.
            const float* px[XB];
            const float* row = c.in + static_cast<int64_t>(g.iy0 + i) * c.in_row_stride + static_cast<int64_t>(ix0 + j_lo) * c.in_stride;
            GF_UNROLL for (int o = 0; o < XB; ++o) px[o] = row + o * c.px_step;
            const float* w = panel + kConvNR + static_cast<int64_t>(i * k + j_lo) * in_c * kConvNR;
            if constexpr (KS > 0 && IC > 0) {
                GF_UNROLL for (int j = 0; j < KS; ++j) {
                    GF_UNROLL for (int ic = 0; ic < IC; ++ic) step(px, ic * c.in_c_stride, w + (j * IC + ic) * kConvNR);
                    GF_UNROLL for (int o = 0; o < XB; ++o) px[o] += c.in_stride;
                }
            } else {
                for (int32_t j = j_lo; j < j_hi; ++j) {
                    for (int32_t ic = 0; ic < in_c; ++ic, w += kConvNR) step(px, ic * c.in_c_stride, w);
                    GF_UNROLL for (int o = 0; o < XB; ++o) px[o] += c.in_stride;
                }
            }
        }
    }
    epi_apply(acc, c.epi);
    const bool full = cols == NT * kW;
    const int32_t last = cols - (NT - 1) * kW;
    GF_UNROLL for (int o = 0; o < XB; ++o) {
        float* dst = out_px + o * c.out_stride;
        GF_UNROLL for (int v = 0; v < NT; ++v) {
            if (v == NT - 1 && !full)
                v_store_n(dst + v * kW, acc[o * NT + v], tail, last);
            else
                v_store(dst + v * kW, acc[o * NT + v]);
        }
    }
    if (c.epi.post_pass) act_rows(out_px, c.out_stride, XB, cols, c.epi.act);
}

// One output row of one panel (and NB vectors of the next): interior pixels in blocks (kConvXB pixels, fewer for
// a wider tile: the same accumulator count), then one by one; border pixels clipped.
template <int NV, int KS, int IC, int NB = 0, int kS = 0, int kInStride = 0>
static void conv_row_panel(const ConvCtx& ctx, const RowGeom& geom, float* out_row, const float* panel,
                           const float* panel2, int32_t x_lo, int32_t x_hi, vmask tail, int32_t cols) {
    constexpr int XB = NB > 0 ? kConvXB * kConvNV / (kConvNV + NB) : kConvXB;
    static_assert(XB >= 1, "a conv tile holds at least one pixel");
    const ConvCtx c = ctx;  // locals: see DwCtx
    const RowGeom g = geom;
    int32_t x = 0;
    auto border = [&](int32_t xb) {
        const int32_t ix0 = xb * c.stride - c.pad;
        conv_tile<1, NV, 0, 0, NB>(c, g, xb, imax(0, -ix0), imin(c.kernel, c.in_w - ix0), panel, panel2,
                                   out_row + static_cast<int64_t>(xb) * c.out_stride, tail, cols);
    };
    for (; x < x_lo; ++x) border(x);
    for (; x + XB <= x_hi; x += XB)
        conv_tile<XB, NV, KS, IC, NB, kS, kInStride>(c, g, x, 0, c.kernel, panel, panel2,
                                                     out_row + static_cast<int64_t>(x) * c.out_stride, tail, cols);
    for (; x < x_hi; ++x)
        conv_tile<1, NV, KS, IC, NB, kS, kInStride>(c, g, x, 0, c.kernel, panel, panel2,
                                                    out_row + static_cast<int64_t>(x) * c.out_stride, tail, cols);
    for (; x < c.out_w; ++x) border(x);
}

template <int KS, int IC, int kS = 0, int kInStride = 0>
static void conv_rows(const ConvArgs& a, int32_t y_begin, int32_t y_end) {
    ConvCtx c;
    c.in = a.in;
    c.in_stride = a.in_stride;
    c.in_c_stride = a.in_c_stride;
    c.in_row_stride = static_cast<int64_t>(a.in_w) * a.in_stride;
    c.out_stride = a.out_stride;
    c.px_step = static_cast<int64_t>(a.stride) * a.in_stride;
    c.in_w = a.in_w;
    c.in_c = a.in_c;
    c.kernel = a.kernel;
    c.stride = a.stride;
    c.pad = a.pad;
    c.out_w = a.out_w;
    c.epi = epi_for(a.act);
    const int64_t panel_stride = static_cast<int64_t>(kConvNR) * (static_cast<int64_t>(a.kernel) * a.kernel * a.in_c + 1);
    int32_t x_lo = 0, x_hi = 0;
    interior_cols(a.out_w, a.in_w, a.stride, a.pad, a.kernel, &x_lo, &x_hi);
    for (int32_t y = y_begin; y < y_end; ++y) {
        const RowGeom g = row_geom(y, a.stride, a.pad, a.kernel, a.in_h);
        float* out_row = a.out + static_cast<int64_t>(y) * a.out_w * a.out_stride;
        for (int32_t n0 = 0; n0 < a.out_c; n0 += kConvNR) {
            const float* panel = a.packed + static_cast<int64_t>(n0 / kConvNR) * panel_stride;
            const int32_t cols = imin(kConvNR, a.out_c - n0);
            const int32_t nv = div_up(cols, kW);
            const int32_t rest = a.out_c - n0 - kConvNR;  // channels after this panel
            if (nv == kConvNV && rest > 0 && rest <= kW) {  // a full panel and a last one of one vector, at once
                conv_row_panel<kConvNV, KS, IC, 1, kS, kInStride>(c, g, out_row + n0, panel, panel + panel_stride,
                                                                  x_lo, x_hi, v_mask(rest), kConvNR + rest);
                break;
            }
            const vmask tail = v_mask(cols - (nv - 1) * kW);
            if (nv == kConvNV) {
                conv_row_panel<kConvNV, KS, IC, 0, kS, kInStride>(c, g, out_row + n0, panel, nullptr, x_lo, x_hi, tail, cols);
            } else if (nv == 1) {
                conv_row_panel<1, KS, IC, 0, kS, kInStride>(c, g, out_row + n0, panel, nullptr, x_lo, x_hi, tail, cols);
            } else {
                if constexpr (kConvNV == 3)
                    conv_row_panel<2, KS, IC, 0, kS, kInStride>(c, g, out_row + n0, panel, nullptr, x_lo, x_hi, tail, cols);
            }
        }
    }
}

static void conv(const ConvArgs& a, int32_t y_begin, int32_t y_end) {
    if (y_begin >= y_end || a.out_c <= 0) return;
    if (a.kernel == 3 && a.in_c == 3) {  // the stems: planar (the engine's input) or NHWC, stride 2 in every zoo model
        if (a.stride == 2 && a.in_stride == 1) return conv_rows<3, 3, 2, 1>(a, y_begin, y_end);
        if (a.stride == 2 && a.in_stride == 3 && a.in_c_stride == 1) return conv_rows<3, 3, 2, 3>(a, y_begin, y_end);
        return conv_rows<3, 3>(a, y_begin, y_end);
    }
    conv_rows<0, 0>(a, y_begin, y_end);
}

// ---------------------------------------------------------------------------------------------------------------
// Pools, vectorized across channels; taps clipped per pixel (pools are a tiny share of the work).

template <bool kMax, int kTail>
static GF_INLINE void pool_pixel(const PoolArgs& a, const RowGeom& g, int32_t j_lo, int32_t j_hi, int32_t ix0,
                                 int32_t c0, float* out, vmask m, vf scale) {
    vf acc = kMax ? v_set1(-__builtin_inff()) : v_zero();
    for (int32_t i = g.i_lo; i < g.i_hi; ++i) {
        const float* px = a.in + (static_cast<int64_t>(g.iy0 + i) * a.in_w + ix0 + j_lo) * a.in_stride + c0;
        for (int32_t j = j_lo; j < j_hi; ++j, px += a.in_stride) {
            const vf v = v_load_t<kTail>(px, m);
            acc = kMax ? v_max(v, acc) : v_add(acc, v);
        }
    }
    if (!kMax) acc = v_mul(acc, scale);
    v_store_t<kTail>(out, acc, m);
}

template <bool kMax>
static void pool_rows(const PoolArgs& args, int32_t y_begin, int32_t y_end) {
    const PoolArgs a = args;  // a local copy: see DwCtx
    if (y_begin >= y_end || a.channels <= 0) return;
    const int32_t full_tiles = a.channels / kW;
    const int32_t rem = a.channels - full_tiles * kW;
    const vmask m = v_mask(rem ? rem : kW);
    const vf scale = v_set1(1.0f / static_cast<float>(a.kernel * a.kernel));  // count_include_pad=True
    for (int32_t y = y_begin; y < y_end; ++y) {
        const RowGeom g = row_geom(y, a.stride, a.pad, a.kernel, a.in_h);
        float* out_row = a.out + static_cast<int64_t>(y) * a.out_w * a.out_stride;
        for (int32_t x = 0; x < a.out_w; ++x) {
            const int32_t ix0 = x * a.stride - a.pad;
            const int32_t j_lo = imax(0, -ix0), j_hi = imin(a.kernel, a.in_w - ix0);
            float* out = out_row + static_cast<int64_t>(x) * a.out_stride;
            int32_t t = 0;
            for (; t < full_tiles; ++t) pool_pixel<kMax, kTailNone>(a, g, j_lo, j_hi, ix0, t * kW, out + t * kW, m, scale);
            if (rem) pool_pixel<kMax, kTailMasked>(a, g, j_lo, j_hi, ix0, t * kW, out + t * kW, m, scale);
        }
    }
}

static void max_pool(const PoolArgs& a, int32_t y_begin, int32_t y_end) { pool_rows<true>(a, y_begin, y_end); }
static void avg_pool(const PoolArgs& a, int32_t y_begin, int32_t y_end) { pool_rows<false>(a, y_begin, y_end); }

// ---------------------------------------------------------------------------------------------------------------
// Global average pool: four independent channel vectors per pass over the pixels, so the adds of one pixel
// overlap instead of forming one latency chain.

static void global_avg_pool(const float* in, int64_t pixels, int64_t in_stride, int32_t channels, float* out) {
    const vf scale = v_set1(pixels > 0 ? 1.0f / static_cast<float>(pixels) : 0.0f);
    int32_t c = 0;
    for (; c + 4 * kW <= channels; c += 4 * kW) {
        vf s0 = v_zero(), s1 = v_zero(), s2 = v_zero(), s3 = v_zero();
        const float* p = in + c;
        for (int64_t i = 0; i < pixels; ++i, p += in_stride) {
            s0 = v_add(s0, v_load(p));
            s1 = v_add(s1, v_load(p + kW));
            s2 = v_add(s2, v_load(p + 2 * kW));
            s3 = v_add(s3, v_load(p + 3 * kW));
        }
        v_store(out + c, v_mul(s0, scale));
        v_store(out + c + kW, v_mul(s1, scale));
        v_store(out + c + 2 * kW, v_mul(s2, scale));
        v_store(out + c + 3 * kW, v_mul(s3, scale));
    }
    for (; c + kW <= channels; c += kW) {
        vf s = v_zero();
        const float* p = in + c;
        for (int64_t i = 0; i < pixels; ++i, p += in_stride) s = v_add(s, v_load(p));
        v_store(out + c, v_mul(s, scale));
    }
    if (c < channels) {
        const vmask m = v_mask(channels - c);
        vf s = v_zero();
        const float* p = in + c;
        const int32_t lanes = channels - c;
        for (int64_t i = 0; i < pixels; ++i, p += in_stride) s = v_add(s, v_load_n(p, m, lanes));
        v_store_n(out + c, v_mul(s, scale), m, lanes);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Element-wise kernels; the activation is a template argument so the inner loops carry no switch.

template <int kAct>
static void add_t(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out, int64_t out_stride,
                  int32_t channels, int64_t p_begin, int64_t p_end) {
    const int32_t full = channels / kW * kW;
    const vmask m = v_mask(channels > full ? channels - full : kW);
    for (int64_t p = p_begin; p < p_end; ++p) {
        const float* ap = a + p * a_stride;
        const float* bp = b + p * b_stride;
        float* op = out + p * out_stride;
        int32_t c = 0;
        for (; c < full; c += kW) v_store(op + c, act_t<kAct>(v_add(v_load(ap + c), v_load(bp + c))));
        if (c < channels) {
            const int32_t lanes = channels - c;
            v_store_n(op + c, act_t<kAct>(v_add(v_load_n(ap + c, m, lanes), v_load_n(bp + c, m, lanes))), m, lanes);
        }
    }
}

static void add(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out, int64_t out_stride,
                int32_t channels, Act act, int64_t p_begin, int64_t p_end) {
    switch (act) {
        case Act::kNone: return add_t<0>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kReLU: return add_t<1>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kReLU6: return add_t<2>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kHardSwish: return add_t<3>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kHardSigmoid: return add_t<4>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kSiLU: return add_t<5>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
        case Act::kSigmoid: return add_t<6>(a, a_stride, b, b_stride, out, out_stride, channels, p_begin, p_end);
    }
}

static void scale_channels(float* x, int64_t stride, const float* scale, int32_t channels, int64_t p_begin,
                           int64_t p_end) {
    const int32_t full = channels / kW * kW;
    const vmask m = v_mask(channels > full ? channels - full : kW);
    for (int64_t p = p_begin; p < p_end; ++p) {
        float* xp = x + p * stride;
        int32_t c = 0;
        for (; c < full; c += kW) v_store(xp + c, v_mul(v_load(xp + c), v_load(scale + c)));
        if (c < channels) {
            const int32_t lanes = channels - c;
            v_store_n(xp + c, v_mul(v_load_n(xp + c, m, lanes), v_load_n(scale + c, m, lanes)), m, lanes);
        }
    }
}

template <int kAct>
static void activate_t(float* x, int64_t count) {
    int64_t i = 0;
    for (; i + kW <= count; i += kW) v_store(x + i, act_t<kAct>(v_load(x + i)));
    if (i < count) {
        const vmask m = v_mask(static_cast<int32_t>(count - i));
        v_storem(x + i, act_t<kAct>(v_loadm(x + i, m)), m);
    }
}

static void activate(float* x, int64_t count, Act act) {
    switch (act) {
        case Act::kNone: return;
        case Act::kReLU: return activate_t<1>(x, count);
        case Act::kReLU6: return activate_t<2>(x, count);
        case Act::kHardSwish: return activate_t<3>(x, count);
        case Act::kHardSigmoid: return activate_t<4>(x, count);
        case Act::kSiLU: return activate_t<5>(x, count);
        case Act::kSigmoid: return activate_t<6>(x, count);
    }
}

// The table of this ISA, listed once here so every unit fills it the same way.
#define GF_KERNEL_TABLE_ENTRIES(isa_name)                                                                        \
    isa_name, kW, kPwNR, &pointwise_packed_size, &pack_pointwise, &depthwise_packed_size, &pack_depthwise,    \
        &conv_packed_size, &pack_conv, &pointwise, &depthwise, &conv, &max_pool, &avg_pool, &global_avg_pool, \
        &add, &scale_channels, &activate
