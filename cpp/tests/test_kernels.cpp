// Every kernel of every kernel table this CPU can run (generic and avx2 on x86-64; generic and neon on AArch64,
// under qemu in CI) against the naive reference kernels (ghostfast::reference), over the shapes that break
// vector code: channel counts with every kind of vector tail, odd spatial sizes, stride 2 on odd inputs, K from 1
// to 1000, M not a multiple of the row tile, N not a multiple of the panel width, channel-slice (strided) inputs
// and outputs, ring buffers, and sub-range calls as the executor's threads make them. The C++ counterpart of
// tests/test_kernels.py (same cases, same tolerance), runnable where Python and torch are not (cross-built
// AArch64 binaries under qemu, a phone over adb).
//
// Every output is a slice of a wider buffer whose slice starts out NaN (an element a kernel forgot to write
// differs from the reference) and whose guard region around it (other channels, and floats before the first and
// after the last pixel) must come back bit-for-bit unchanged; inputs must come back entirely unchanged.
//
// Sizes are chosen for qemu, ~30x slower than native: the full channel list on cheap cases, representative
// subsets on big ones; each reference is computed once per case and compared with every table.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "ghostfast/cpu_features.h"
#include "ghostfast/kernels.h"
#include "kernel_test_util.h"

namespace {

using ghostfast::Act;
using ghostfast::KernelTable;
using kt::Strided;

constexpr float kGuard = 12345.0f;  // what surrounds output slices
// Output slices start out NaN (an element no call wrote stays NaN and differs from the reference). Input slices
// are surrounded by NaN: a kernel that takes another channel (or a float before / after the plane) for one of
// its own, or multiplies such a float by a zero padding weight into a lane it keeps, gets NaN into its output.
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::vector<const KernelTable*> all_tables() { return kt::tables(); }

// GHOSTFAST_KT_COUNT=1 prints the number of (table, case) comparisons made at exit (for sizing the suite).
struct CountAtExit {
    ~CountAtExit() {
        const char* e = std::getenv("GHOSTFAST_KT_COUNT");
        if (e && *e == '1')
            std::printf("kernel comparisons (table x case): %lld\n", static_cast<long long>(kt::case_count()));
    }
} count_at_exit;

// ---------------------------------------------------------------------------------------------------------------
// Pointwise: one case = one reference, checked against each table (optionally one table only: table-dependent
// widths).

struct PwCase {
    int64_t m = 1;
    int32_t k = 1, n = 1;
    Act act = Act::kNone;
    bool bias = true;
    bool residual = false;
    bool raw = false;
    bool alias = false;      // the residual is the output buffer itself (an in-place residual add)
    int64_t k_stride = 1;    // PointwiseArgs::a_kstride; A's slice then starts one column into its row
    int64_t a_extra[2] = {0, 0};    // floats before / after A's slice in each row
    int64_t r_extra[2] = {0, 0};
    int64_t c_extra[2] = {0, 0};
    int64_t raw_extra[2] = {0, 0};
    int64_t m_chunk = 0;     // rows per sub-range call (0: one call)
    int32_t n_chunk = 0;     // panels (of pointwise_nr columns) per sub-range call
    float w_scale = 0.0f;    // 0: k^-1/2
    float r_scale = 1.0f;
};

void check_pointwise(const PwCase& pc, const std::vector<const KernelTable*>& tabs, const char* tag) {
    INFO(std::string(tag), ": m=", pc.m, " k=", pc.k, " n=", pc.n, " act=", kt::act_name(pc.act), " bias=", pc.bias,
         " residual=", pc.residual, " raw=", pc.raw, " alias=", pc.alias, " k_stride=", pc.k_stride,
         " m_chunk=", pc.m_chunk, " n_chunk=", pc.n_chunk);
    auto rng = kt::rng_for(tag, pc.m, pc.k, pc.n, static_cast<int>(pc.act), pc.k_stride, pc.residual);
    // A: with k_stride s, the k inputs of a row are columns 0, s, 2s, ... of a slice that starts one column into
    // a row of k * s floats (ShuffleNetV1's grouped 1x1 reading the unshuffled tensor).
    const int64_t a_cols = (pc.k - 1) * pc.k_stride + 1;
    const int64_t a_before = pc.k_stride > 1 ? 1 : pc.a_extra[0];
    const int64_t a_after = pc.k_stride > 1 ? pc.k_stride - 2 + pc.a_extra[1] : pc.a_extra[1];
    Strided a(pc.m, a_cols, a_before, a_after);
    a.fill_random(rng);
    a.fill_outside(kNaN);  // see kNaN
    a.snapshot();
    const float w_scale = pc.w_scale > 0 ? pc.w_scale : 1.0f / std::sqrt(static_cast<float>(pc.k));
    const std::vector<float> w = kt::randn(rng, static_cast<size_t>(pc.n) * pc.k, w_scale);
    const std::vector<float> bias = kt::randn(rng, static_cast<size_t>(pc.n));
    const float* b = pc.bias ? bias.data() : nullptr;
    Strided r(pc.m, pc.n, pc.r_extra[0], pc.r_extra[1]);
    r.fill_random(rng, pc.r_scale);
    r.fill_outside(kNaN);
    r.snapshot();

    ghostfast::PointwiseArgs args;
    args.a = a.data();
    args.a_stride = a.stride();
    args.a_kstride = pc.k_stride;
    args.m = pc.m;
    args.k = pc.k;
    args.n = pc.n;
    args.act = pc.act;
    if (pc.residual) args.residual = r.data(), args.r_stride = r.stride();

    Strided ref_c(pc.m, pc.n), ref_raw(pc.m, pc.n);
    {
        ghostfast::PointwiseArgs ra = args;
        ra.c = ref_c.data(), ra.c_stride = ref_c.stride();
        if (pc.raw) ra.raw = ref_raw.data(), ra.raw_stride = ref_raw.stride();
        ghostfast::reference::pointwise(ra, w.data(), b);
    }

    for (const KernelTable* t : tabs) {
        INFO("table ", std::string(t->isa));
        kt::count_case();
        const kt::Packed packed = kt::pack_pointwise(*t, w.data(), b, pc.k, pc.n);
        Strided c(pc.m, pc.n, pc.c_extra[0], pc.c_extra[1]), raw(pc.m, pc.n, pc.raw_extra[0], pc.raw_extra[1]);
        c.fill_outside(kGuard);
        c.fill_slice(kNaN);
        raw.fill_outside(-kGuard);
        raw.fill_slice(kNaN);
        ghostfast::PointwiseArgs ta = args;
        ta.packed = packed.data();
        ta.c = c.data(), ta.c_stride = c.stride();
        if (pc.raw) ta.raw = raw.data(), ta.raw_stride = raw.stride();
        if (pc.alias) {
            c.copy_slice_from(r);
            ta.residual = c.data(), ta.r_stride = c.stride();
        }
        c.snapshot();
        raw.snapshot();
        const int64_t nr = t->pointwise_nr;
        const int64_t panels = (pc.n + nr - 1) / nr;
        const bool whole = pc.m_chunk == 0 && pc.n_chunk == 0;
        bool in_range = true;  // every sub-range call wrote only its own block (of the output and of raw)
        kt::chunked(pc.m, pc.m_chunk, [&](int64_t m0, int64_t m1) {
            kt::chunked(panels, pc.n_chunk, [&](int64_t p0, int64_t p1) {
                const int32_t n0 = static_cast<int32_t>(p0 * nr), n1 = static_cast<int32_t>(p1 * nr < pc.n ? p1 * nr : pc.n);
                if (!whole) c.poison_outside(m0, m1, n0, n1);
                if (!whole && pc.raw) raw.poison_outside(m0, m1, n0, n1);
                t->pointwise(ta, m0, m1, n0, n1);
                if (!whole) in_range = in_range && c.unchanged_except(m0, m1, n0, n1), c.unpoison();
                if (!whole && pc.raw) in_range = in_range && raw.unchanged_except(m0, m1, n0, n1), raw.unpoison();
            });
        });
        CHECK_MESSAGE(in_range, "a sub-range call wrote outside its rows x columns");
        const std::string err = kt::compare(c, ref_c);
        CHECK_MESSAGE(err.empty(), "output: " << err);
        CHECK_MESSAGE(c.outside_unchanged(), "wrote outside the output slice");
        if (pc.raw) {
            const std::string raw_err = kt::compare(raw, ref_raw);
            CHECK_MESSAGE(raw_err.empty(), "raw: " << raw_err);
        }
        CHECK_MESSAGE(raw.outside_unchanged(), "wrote outside the raw slice");
        if (!pc.raw) CHECK_MESSAGE(raw.all_unchanged(), "wrote raw although raw is null");
        CHECK_MESSAGE(a.all_unchanged(), "wrote into A");
        CHECK_MESSAGE(r.all_unchanged(), "wrote into the residual");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Depthwise

struct DwCase {
    int32_t h = 1, w = 1, c = 1, k = 3, s = 1, pad = 1;
    Act act = Act::kNone;
    bool bias = true;
    bool residual = false;
    int64_t in_extra[2] = {0, 0};
    int64_t out_extra[2] = {0, 0};
    int64_t r_extra[2] = {0, 0};
    int32_t row_chunk = 0;
    float w_scale = 0.3f;
};

void check_depthwise(const DwCase& dc, const std::vector<const KernelTable*>& tabs, const char* tag) {
    INFO(std::string(tag), ": h=", dc.h, " w=", dc.w, " c=", dc.c, " k=", dc.k, " s=", dc.s, " pad=", dc.pad,
         " act=", kt::act_name(dc.act), " residual=", dc.residual, " row_chunk=", dc.row_chunk);
    auto rng = kt::rng_for(tag, dc.h, dc.w, dc.c, dc.k, dc.s, dc.pad, static_cast<int>(dc.act));
    const int32_t oh = kt::out_size(dc.h, dc.k, dc.s, dc.pad), ow = kt::out_size(dc.w, dc.k, dc.s, dc.pad);
    REQUIRE(oh >= 1);
    REQUIRE(ow >= 1);
    Strided x(static_cast<int64_t>(dc.h) * dc.w, dc.c, dc.in_extra[0], dc.in_extra[1]);
    x.fill_random(rng);
    x.fill_outside(kNaN);  // see kNaN
    x.snapshot();
    const std::vector<float> w = kt::randn(rng, static_cast<size_t>(dc.c) * dc.k * dc.k, dc.w_scale);
    const std::vector<float> bias = kt::randn(rng, static_cast<size_t>(dc.c));
    const float* b = dc.bias ? bias.data() : nullptr;
    Strided r(static_cast<int64_t>(oh) * ow, dc.c, dc.r_extra[0], dc.r_extra[1]);
    r.fill_random(rng);
    r.fill_outside(kNaN);
    r.snapshot();

    ghostfast::DepthwiseArgs args;
    args.in = x.data();
    args.in_h = dc.h, args.in_w = dc.w, args.in_stride = x.stride();
    args.out_h = oh, args.out_w = ow;
    args.channels = dc.c, args.kernel = dc.k, args.stride = dc.s, args.pad = dc.pad, args.act = dc.act;
    if (dc.residual) args.residual = r.data(), args.r_stride = r.stride();

    Strided ref(static_cast<int64_t>(oh) * ow, dc.c);
    {
        ghostfast::DepthwiseArgs ra = args;
        ra.out = ref.data(), ra.out_stride = ref.stride();
        ghostfast::reference::depthwise(ra, w.data(), b);
    }
    for (const KernelTable* t : tabs) {
        INFO("table ", std::string(t->isa));
        kt::count_case();
        const kt::Packed packed = kt::pack_depthwise(*t, w.data(), b, dc.c, dc.k);
        Strided out(static_cast<int64_t>(oh) * ow, dc.c, dc.out_extra[0], dc.out_extra[1]);
        out.fill_outside(kGuard);
        out.fill_slice(kNaN);
        out.snapshot();
        ghostfast::DepthwiseArgs ta = args;
        ta.packed = packed.data();
        ta.out = out.data(), ta.out_stride = out.stride();
        const bool in_range = kt::rows_in_range(out, oh, ow, dc.row_chunk,
                                                 [&](int32_t y0, int32_t y1) { t->depthwise(ta, y0, y1); });
        CHECK_MESSAGE(in_range, "a row-range call wrote outside its rows");
        const std::string err = kt::compare(out, ref);
        CHECK_MESSAGE(err.empty(), err);
        CHECK_MESSAGE(out.outside_unchanged(), "wrote outside the output slice");
        CHECK_MESSAGE(x.all_unchanged(), "wrote into the input");
        CHECK_MESSAGE(r.all_unchanged(), "wrote into the residual");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dense conv

struct ConvCase {
    int32_t h = 1, w = 1, ic = 1, oc = 1, k = 3, s = 1, pad = 1;
    Act act = Act::kNone;
    bool planar = false;  // NCHW input (in_stride 1, in_c_stride h * w), as the engine's stem reads its input
    int64_t in_extra[2] = {0, 0};
    int64_t out_extra[2] = {0, 0};
    int32_t row_chunk = 0;
    float w_scale = 0.3f;
};

void check_conv(const ConvCase& cc, const std::vector<const KernelTable*>& tabs, const char* tag) {
    INFO(std::string(tag), ": h=", cc.h, " w=", cc.w, " ic=", cc.ic, " oc=", cc.oc, " k=", cc.k, " s=", cc.s, " pad=", cc.pad,
         " act=", kt::act_name(cc.act), " planar=", cc.planar, " row_chunk=", cc.row_chunk);
    auto rng = kt::rng_for(tag, cc.h, cc.w, cc.ic, cc.oc, cc.k, cc.s, cc.pad);
    const int32_t oh = kt::out_size(cc.h, cc.k, cc.s, cc.pad), ow = kt::out_size(cc.w, cc.k, cc.s, cc.pad);
    REQUIRE(oh >= 1);
    REQUIRE(ow >= 1);
    const int64_t pixels = static_cast<int64_t>(cc.h) * cc.w;
    Strided x(pixels, cc.ic, cc.in_extra[0], cc.in_extra[1]);
    x.fill_random(rng);
    x.fill_outside(kNaN);  // see kNaN
    x.snapshot();
    // The planar copy of the same image: channel planes of h * w floats.
    Strided planar(cc.ic, pixels);
    planar.fill_outside(kNaN);
    for (int64_t p = 0; p < pixels; ++p)
        for (int32_t c = 0; c < cc.ic; ++c) planar.at(c, p) = x.at(p, c);
    planar.snapshot();
    const std::vector<float> w = kt::randn(rng, static_cast<size_t>(cc.oc) * cc.ic * cc.k * cc.k, cc.w_scale);
    const std::vector<float> bias = kt::randn(rng, static_cast<size_t>(cc.oc));

    ghostfast::ConvArgs args;
    args.in = x.data();
    args.in_h = cc.h, args.in_w = cc.w, args.in_c = cc.ic, args.in_stride = x.stride(), args.in_c_stride = 1;
    args.out_h = oh, args.out_w = ow, args.out_c = cc.oc;
    args.kernel = cc.k, args.stride = cc.s, args.pad = cc.pad, args.act = cc.act;

    // The reference always reads the NHWC image: the planar path is checked against it.
    Strided ref(static_cast<int64_t>(oh) * ow, cc.oc);
    {
        ghostfast::ConvArgs ra = args;
        ra.out = ref.data(), ra.out_stride = ref.stride();
        ghostfast::reference::conv(ra, w.data(), bias.data());
    }
    if (cc.planar) args.in = planar.data(), args.in_stride = 1, args.in_c_stride = pixels;
    for (const KernelTable* t : tabs) {
        INFO("table ", std::string(t->isa));
        kt::count_case();
        const kt::Packed packed = kt::pack_conv(*t, w.data(), bias.data(), cc.ic, cc.oc, cc.k);
        Strided out(static_cast<int64_t>(oh) * ow, cc.oc, cc.out_extra[0], cc.out_extra[1]);
        out.fill_outside(kGuard);
        out.fill_slice(kNaN);
        out.snapshot();
        ghostfast::ConvArgs ta = args;
        ta.packed = packed.data();
        ta.out = out.data(), ta.out_stride = out.stride();
        const bool in_range = kt::rows_in_range(out, oh, ow, cc.row_chunk,
                                                 [&](int32_t y0, int32_t y1) { t->conv(ta, y0, y1); });
        CHECK_MESSAGE(in_range, "a row-range call wrote outside its rows");
        const std::string err = kt::compare(out, ref);
        CHECK_MESSAGE(err.empty(), err);
        CHECK_MESSAGE(out.outside_unchanged(), "wrote outside the output slice");
        CHECK_MESSAGE(x.all_unchanged(), "wrote into the input");
        CHECK_MESSAGE(planar.all_unchanged(), "wrote into the planar input");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pools

struct PoolCase {
    int32_t h = 1, w = 1, c = 1, k = 3, s = 2, pad = 1;
    int64_t in_extra[2] = {0, 0};
    int64_t out_extra[2] = {0, 0};
    int32_t row_chunk = 0;
};

void check_pools(const PoolCase& pc, const std::vector<const KernelTable*>& tabs, const char* tag) {
    INFO(std::string(tag), ": h=", pc.h, " w=", pc.w, " c=", pc.c, " k=", pc.k, " s=", pc.s, " pad=", pc.pad,
         " row_chunk=", pc.row_chunk);
    auto rng = kt::rng_for(tag, pc.h, pc.w, pc.c, pc.k, pc.s, pc.pad);
    const int32_t oh = kt::out_size(pc.h, pc.k, pc.s, pc.pad), ow = kt::out_size(pc.w, pc.k, pc.s, pc.pad);
    REQUIRE(oh >= 1);
    REQUIRE(ow >= 1);
    Strided x(static_cast<int64_t>(pc.h) * pc.w, pc.c, pc.in_extra[0], pc.in_extra[1]);
    x.fill_random(rng);
    x.fill_outside(kNaN);  // see kNaN
    x.snapshot();
    ghostfast::PoolArgs args;
    args.in = x.data();
    args.in_h = pc.h, args.in_w = pc.w, args.in_stride = x.stride();
    args.out_h = oh, args.out_w = ow, args.channels = pc.c, args.kernel = pc.k, args.stride = pc.s, args.pad = pc.pad;
    for (const bool is_max : {true, false}) {
        INFO(std::string(is_max ? "max_pool" : "avg_pool"));
        Strided ref(static_cast<int64_t>(oh) * ow, pc.c);
        ghostfast::PoolArgs ra = args;
        ra.out = ref.data(), ra.out_stride = ref.stride();
        is_max ? ghostfast::reference::max_pool(ra) : ghostfast::reference::avg_pool(ra);
        for (const KernelTable* t : tabs) {
            INFO("table ", std::string(t->isa));
            kt::count_case();
            Strided out(static_cast<int64_t>(oh) * ow, pc.c, pc.out_extra[0], pc.out_extra[1]);
            out.fill_outside(-kGuard);
            out.fill_slice(kNaN);
            out.snapshot();
            ghostfast::PoolArgs ta = args;
            ta.out = out.data(), ta.out_stride = out.stride();
            auto fn = is_max ? t->max_pool : t->avg_pool;
            const bool in_range = kt::rows_in_range(out, oh, ow, pc.row_chunk,
                                                     [&](int32_t y0, int32_t y1) { fn(ta, y0, y1); });
            CHECK_MESSAGE(in_range, "a row-range call wrote outside its rows");
            const std::string err = kt::compare(out, ref);
            CHECK_MESSAGE(err.empty(), err);
            CHECK_MESSAGE(out.outside_unchanged(), "wrote outside the output slice");
            CHECK_MESSAGE(x.all_unchanged(), "wrote into the input");
        }
    }
}

}  // namespace

TEST_SUITE("kernels") {

// ---------------------------------------------------------------------------------------------------------------
// Dispatch and table metadata

TEST_CASE("tables: listed best last, generic first, the CPU's ISAs present") {
    const auto& tabs = kt::tables();
    REQUIRE(!tabs.empty());
    CHECK(std::string(tabs.front()->isa) == "generic");
    const KernelTable* listed[8] = {};
    const int32_t n = ghostfast::available_kernel_tables(listed, 8);
    CHECK(n == static_cast<int32_t>(tabs.size()));
    // capacity smaller than the count: only `capacity` entries are written, the count is still returned
    const KernelTable* one[2] = {nullptr, nullptr};
    CHECK(ghostfast::available_kernel_tables(one, 1) == n);
    CHECK(one[0] == tabs.front());
    CHECK(one[1] == nullptr);
    bool best_listed = false;
    for (const KernelTable* t : tabs) {
        best_listed = best_listed || t == &ghostfast::best_kernels();
        CHECK(ghostfast::kernels_for(t->isa) == t);
    }
    CHECK(best_listed);
    const char* forced = std::getenv("GHOSTFAST_ISA");
    if (!forced || !*forced) CHECK(&ghostfast::best_kernels() == tabs.back());
    CHECK(ghostfast::kernels_for("sse9000") == nullptr);
    CHECK(ghostfast::kernels_for(nullptr) == nullptr);
    const ghostfast::CpuFeatures& f = ghostfast::cpu_features();
    auto has = [&](const char* isa) {
        for (const KernelTable* t : tabs)
            if (std::string(t->isa) == isa) return true;
        return false;
    };
    if (f.avx2 && f.fma) CHECK(has("avx2"));
    if (f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl) CHECK(has("avx512"));
#if defined(__aarch64__)
    // Advanced SIMD is part of the AArch64 baseline: every ARM64 build and CPU has the neon table.
    CHECK(has("neon"));
#endif
}

TEST_CASE("tables: vector width, panel width and packed sizes") {
    for (const KernelTable* t : kt::tables()) {
        INFO("table ", std::string(t->isa));
        const int32_t w = t->vector_floats, nr = t->pointwise_nr;
        CHECK((w == 4 || w == 8 || w == 16));
        REQUIRE(nr > 0);
        CHECK(nr % w == 0);
        const int32_t k = 37, n = 45, c = 46, ks = 5, ic = 3, oc = 20;
        CHECK(t->pointwise_packed_size(k, n) == static_cast<size_t>((n + nr - 1) / nr * nr * (k + 1)));
        CHECK(t->depthwise_packed_size(c, ks) == static_cast<size_t>((c + w - 1) / w * w * (ks * ks + 1)));
        const size_t conv = t->conv_packed_size(ic, oc, ks);
        CHECK(conv % static_cast<size_t>(w) == 0);
        CHECK(conv >= static_cast<size_t>(oc * (ks * ks * ic + 1)));
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pointwise

TEST_CASE("pointwise: M x K x N grid (row-tile remainders, panel tails, K from 1 to 1000)") {
    // The Python suite's grid: each N against every M, K cycling through its list, activation and residual
    // varying along.
    const int64_t ms[] = {1, 2, 5, 6, 7, 8, 9, 11, 13, 16, 23, 34, 49, 100};
    const int32_t ks[] = {1, 2, 3, 8, 16, 24, 40, 64, 160, 333, 1000};
    const int32_t ns[] = {1, 3, 5, 8, 12, 16, 20, 24, 32, 36, 46, 60, 72, 92, 100, 130};
    const int nk = static_cast<int>(sizeof ks / sizeof ks[0]);
    for (int i = 0; i < static_cast<int>(sizeof ns / sizeof ns[0]); ++i) {
        for (int j = 0; j < static_cast<int>(sizeof ms / sizeof ms[0]); ++j) {
            PwCase pc;
            pc.m = ms[j], pc.n = ns[i], pc.k = ks[(i * 5 + j * 3) % nk];
            pc.act = kt::act_at(i + j);
            pc.residual = (i * j) % 3 == 0;
            check_pointwise(pc, all_tables(), "pw");
        }
    }
}

TEST_CASE("pointwise: every column count up to two panels and a vector past them, every row remainder") {
    // Per table: N = 1 .. 2 * pointwise_nr + vector_floats + 1 covers every panel tail (masked, half-vector, one
    // vector after a full panel: the widened tile) at a few row counts; M = 1 .. 40 covers every remainder of
    // the 6-, 8- and 12-row tiles and the rebalanced last pair of tiles, at panel-boundary widths.
    for (const KernelTable* t : kt::tables()) {
        const int32_t nr = t->pointwise_nr, w = t->vector_floats;
        int case_i = 0;
        for (int32_t n = 1; n <= 2 * nr + w + 1; ++n) {
            for (const int64_t m : {1, 5, 13}) {
                PwCase pc;
                pc.m = m, pc.n = n, pc.k = 1 + (case_i * 5) % 19;  // every K remainder of 4 and 8 steps
                pc.act = kt::act_at(case_i++);
                pc.residual = n % 2 == 0;
                pc.raw = m == 5;
                pc.c_extra[1] = n % 4;  // the slice ends where the buffer's row does (the guard) or before
                check_pointwise(pc, {t}, "pw_tails");
            }
        }
        for (int64_t m = 1; m <= 40; ++m) {
            for (const int32_t n : {nr, nr + w, 2 * nr + 1}) {
                PwCase pc;
                pc.m = m, pc.n = n, pc.k = 9;
                pc.act = kt::act_at(case_i++);
                pc.residual = m % 2 == 1;
                check_pointwise(pc, {t}, "pw_rows");
            }
        }
    }
}

TEST_CASE("pointwise: every activation, with and without bias and residual") {
    for (const Act act : kt::kActs) {
        PwCase pc;
        pc.m = 29, pc.k = 45, pc.n = 52, pc.act = act, pc.w_scale = 0.5f, pc.r_scale = 3.0f;
        pc.residual = true;
        check_pointwise(pc, all_tables(), "pw_act");
        pc.residual = false, pc.bias = false;
        check_pointwise(pc, all_tables(), "pw_act");
    }
}

TEST_CASE("pointwise: single row over groups of panels, whole and in panel ranges") {
    // One row streams four weight panels at once; widths around multiples of four panels, whole and in column
    // ranges that start at panel boundaries inside a four-panel group.
    const int32_t panels_extra[][2] = {{3, 15}, {4, 0}, {4, 1}, {8, 5}, {9, 0}, {1, 0}, {5, 3}};
    const struct {
        Act act;
        bool res;
    } variants[] = {{Act::kNone, false}, {Act::kReLU6, true}, {Act::kSiLU, true}, {Act::kSigmoid, false},
                    {Act::kHardSwish, true}};
    for (const KernelTable* t : kt::tables()) {
        for (const auto& pe : panels_extra) {
            for (const auto& v : variants) {
                for (const int32_t n_chunk : {0, 1, 3}) {
                    PwCase pc;
                    pc.m = 1, pc.k = 37, pc.n = pe[0] * t->pointwise_nr + pe[1];
                    pc.act = v.act, pc.residual = v.res, pc.n_chunk = n_chunk;
                    pc.c_extra[0] = 1, pc.c_extra[1] = 2;
                    check_pointwise(pc, {t}, "pw_gemv");
                }
            }
        }
    }
}

TEST_CASE("pointwise: network shapes") {
    const int64_t shapes[][3] = {{3136, 24, 72}, {196, 80, 200}, {49, 160, 960}, {1, 960, 1280}};
    for (const auto& s : shapes) {
        PwCase pc;
        pc.m = s[0], pc.k = static_cast<int32_t>(s[1]), pc.n = static_cast<int32_t>(s[2]), pc.act = Act::kHardSwish;
        check_pointwise(pc, all_tables(), "pw_net");
    }
}

TEST_CASE("pointwise: channel-slice input, residual and output leave the other channels untouched") {
    const int64_t shapes[][3] = {{23, 17, 36}, {50, 64, 20}, {7, 5, 100}, {1, 12, 130}};
    for (const auto& s : shapes) {
        PwCase pc;
        pc.m = s[0], pc.k = static_cast<int32_t>(s[1]), pc.n = static_cast<int32_t>(s[2]), pc.act = Act::kReLU6;
        pc.residual = true, pc.w_scale = 0.3f;
        pc.a_extra[0] = 3, pc.a_extra[1] = 5, pc.r_extra[0] = 7, pc.r_extra[1] = 1;
        pc.c_extra[0] = 5, pc.c_extra[1] = 3;
        check_pointwise(pc, all_tables(), "pw_stride");
    }
}

TEST_CASE("pointwise: sub-ranges as the executor's threads make them") {
    const int64_t chunks[][2] = {{1, 1}, {5, 0}, {7, 2}, {0, 1}, {13, 3}, {31, 0}};
    for (const auto& ch : chunks) {
        PwCase pc;
        pc.m = 61, pc.k = 33, pc.n = 100, pc.act = Act::kSiLU, pc.residual = true, pc.w_scale = 0.3f;
        pc.m_chunk = ch[0], pc.n_chunk = static_cast<int32_t>(ch[1]);
        pc.c_extra[0] = 2, pc.c_extra[1] = 2;
        check_pointwise(pc, all_tables(), "pw_sub");
    }
}

TEST_CASE("pointwise: the residual may be the output itself") {
    for (const int64_t m : {1, 20}) {
        PwCase pc;
        pc.m = m, pc.k = 16, pc.n = 44, pc.act = Act::kReLU, pc.residual = true, pc.alias = true, pc.w_scale = 1.0f;
        pc.c_extra[1] = 3;
        check_pointwise(pc, all_tables(), "pw_alias");
    }
}

TEST_CASE("pointwise: raw output (sum + bias) before the residual and the activation") {
    // raw gets a @ w.T + bias (a Ghost module's primary output for its depthwise) while the output gets the
    // residual and the activation; both are channel slices and nothing around either is written.
    const int32_t cases[][4] = {{1, 7, 24, 0},  {13, 16, 8, 1}, {50, 16, 24, 0}, {23, 48, 12, 2},
                                {61, 24, 36, 5}, {9, 72, 20, 0}, {30, 40, 60, 3}, {7, 33, 130, 0},
                                {1, 20, 100, 6}, {12, 5, 9, 4}};
    for (const auto& cs : cases) {
        PwCase pc;
        pc.m = cs[0], pc.k = cs[1], pc.n = cs[2], pc.act = kt::act_at(cs[3]);
        pc.residual = true, pc.raw = true, pc.m_chunk = 5;
        pc.r_extra[0] = 2, pc.r_extra[1] = 3, pc.c_extra[0] = 3, pc.c_extra[1] = 2;
        pc.raw_extra[0] = 1, pc.raw_extra[1] = 5;
        check_pointwise(pc, all_tables(), "pw_raw");
    }
}

TEST_CASE("pointwise: strided K reads a folded channel shuffle") {
    // a_kstride s: the k inputs of a row are its columns g, g + s, g + 2s, ... (g = 1 here): ShuffleNetV1's
    // grouped 1x1 reading the unshuffled tensor. Single rows go through the tiled path too.
    const int32_t cases[][6] = {{1, 12, 48, 8, 1, 0},  {49, 12, 48, 8, 0, 1}, {196, 24, 96, 8, 1, 0},
                                {37, 48, 192, 8, 0, 1}, {50, 20, 80, 3, 1, 0}, {13, 80, 320, 3, 0, 1},
                                {23, 7, 36, 5, 2, 0},   {9, 3, 130, 2, 0, 0}, {11, 1, 20, 4, 5, 1}};
    for (const auto& cs : cases) {
        PwCase pc;
        pc.m = cs[0], pc.k = cs[1], pc.n = cs[2], pc.k_stride = cs[3], pc.act = kt::act_at(cs[4]);
        pc.residual = cs[5] != 0, pc.m_chunk = 5;
        check_pointwise(pc, all_tables(), "pw_ks");
        // with the raw output and panel ranges as well (a Ghost module's primary 1x1 reading a shuffle)
        pc.raw = true, pc.n_chunk = 1, pc.m_chunk = 0;
        check_pointwise(pc, all_tables(), "pw_ks_raw");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Depthwise

TEST_CASE("depthwise: every channel count, 3x3, 5x5 and 7x7 at strides 1 and 2, every pad, odd sizes") {
    const int32_t sizes[][2] = {{1, 1}, {2, 3}, {7, 7}, {13, 13}, {15, 9}, {9, 16}, {28, 27}, {11, 6}};
    const int32_t ksz[][2] = {{3, 1}, {3, 2}, {5, 1}, {5, 2}, {7, 1}, {7, 2}};
    int i = 0;
    for (const int32_t c : kt::kChannels) {
        for (const auto& kss : ksz) {
            for (int32_t pad = 0; pad <= kss[0] / 2; ++pad, ++i) {
                if (kss[0] == 7 && (pad + c) % 2 == 1) continue;  // 7x7: half the pads per channel count (qemu time)
                DwCase dc;
                dc.h = sizes[i % 8][0], dc.w = sizes[i % 8][1];
                dc.c = c, dc.k = kss[0], dc.s = kss[1], dc.pad = pad, dc.act = kt::act_at(i);
                if (dc.h + 2 * pad < dc.k || dc.w + 2 * pad < dc.k) dc.pad = dc.k / 2;
                dc.residual = i % 5 == 0;
                check_depthwise(dc, all_tables(), "dw");
            }
        }
    }
}

TEST_CASE("depthwise: every channel tail of one and two vectors") {
    for (const KernelTable* t : kt::tables()) {
        const int32_t w = t->vector_floats;
        for (int32_t c = 1; c <= 2 * w + 1; ++c) {
            for (const int32_t k : {3, 5, 7}) {
                DwCase dc;
                dc.h = 9, dc.w = 10, dc.c = c, dc.k = k, dc.s = c % 2 + 1, dc.pad = k / 2;
                dc.act = kt::act_at(c + k);
                dc.residual = c % 3 == 0;
                dc.out_extra[1] = c % 2;
                check_depthwise(dc, {t}, "dw_tails");
            }
        }
    }
}

TEST_CASE("depthwise: every output width from 1 to 24 and the 7-pixel multiples, clipped at both ends") {
    // The row is blocked in 8, 7 and 4 pixels with an overlapping last block and clipped border blocks: each
    // output width makes a different split.
    int i = 0;
    std::vector<int32_t> widths;
    for (int32_t ow = 1; ow <= 24; ++ow) widths.push_back(ow);
    for (const int32_t ow : {28, 35, 56}) widths.push_back(ow);
    for (const int32_t ow : widths) {
        for (const int32_t kss : {31, 32, 51, 52, 71, 72}) {
            DwCase dc;
            dc.k = kss / 10, dc.s = kss % 10, dc.pad = dc.k / 2;
            dc.w = (ow - 1) * dc.s + dc.k - 2 * dc.pad + (i % dc.s);  // the largest width that gives ow
            dc.h = 5, dc.c = (i % 2) ? 12 : 9, dc.act = kt::act_at(i), dc.residual = i % 3 == 0;
            ++i;
            if (dc.w < 1) continue;
            REQUIRE(kt::out_size(dc.w, dc.k, dc.s, dc.pad) == ow);
            check_depthwise(dc, all_tables(), "dw_width");
        }
    }
}

TEST_CASE("depthwise: every activation") {
    const int32_t ksz[][2] = {{3, 1}, {3, 2}, {5, 1}, {5, 2}, {7, 1}, {7, 2}};
    for (const auto& kss : ksz) {
        for (const Act act : kt::kActs) {
            DwCase dc;
            dc.h = 19, dc.w = 21, dc.c = 46, dc.k = kss[0], dc.s = kss[1], dc.pad = kss[0] / 2, dc.act = act;
            dc.w_scale = 0.5f;
            check_depthwise(dc, all_tables(), "dw_act");
        }
    }
}

TEST_CASE("depthwise: network shapes") {
    const int32_t shapes[][5] = {{112, 112, 16, 3, 1}, {56, 56, 72, 3, 2}, {28, 28, 120, 5, 1},
                                 {14, 14, 200, 3, 1},  {7, 7, 960, 5, 1},  {14, 14, 672, 5, 2}};
    for (const auto& s : shapes) {
        DwCase dc;
        dc.h = s[0], dc.w = s[1], dc.c = s[2], dc.k = s[3], dc.s = s[4], dc.pad = s[3] / 2, dc.act = Act::kHardSwish;
        check_depthwise(dc, all_tables(), "dw_net");
    }
}

TEST_CASE("depthwise: rows in blocks of seven with a residual") {
    // Rows of 14, 21, 28 and 35 output pixels run as blocks of 7 (the first and last clipped): a block that
    // skips or repeats a column fails here.
    const int32_t cases[][4] = {{14, 20, 3, 1}, {28, 36, 5, 1}, {21, 9, 3, 2}, {14, 44, 5, 2}, {35, 4, 3, 1}};
    for (const auto& cs : cases) {
        DwCase dc;
        dc.c = cs[1], dc.k = cs[2], dc.s = cs[3], dc.pad = dc.k / 2;
        dc.h = 9, dc.w = cs[0] * dc.s;
        REQUIRE(kt::out_size(dc.w, dc.k, dc.s, dc.pad) == cs[0]);
        dc.act = Act::kReLU, dc.residual = true, dc.r_extra[0] = 3, dc.r_extra[1] = 1;
        check_depthwise(dc, all_tables(), "dw_sevens");
    }
}

TEST_CASE("depthwise: 7x7 and unspecialised kernel sizes at strides 1, 2 and 3, every pad") {
    // 1, 4, 9 and stride 3 have no specialised row loop (the one-pixel-at-a-time path); 7x7 runs in row blocks
    // where the table has the registers for it (neon) and one pixel at a time elsewhere.
    int i = 0;
    for (const int32_t k : {1, 4, 7, 9, 3}) {
        for (const int32_t s : {1, 2, 3}) {
            if (k == 3 && s != 3) continue;  // 3x3 at strides 1 and 2 are specialised (covered above)
            for (int32_t pad = 0; pad <= k / 2; ++pad, ++i) {
                DwCase dc;
                dc.h = 11 + i % 3, dc.w = 10 + i % 2, dc.c = kt::kChannels[i % kt::kChannels.size()];
                dc.k = k, dc.s = s, dc.pad = pad, dc.act = kt::act_at(i), dc.residual = i % 2 == 0;
                dc.out_extra[0] = 1, dc.row_chunk = i % 4;
                check_depthwise(dc, all_tables(), "dw_any");
            }
        }
    }
    // The Python suite's cases (pad larger than k / 2 included).
    const int32_t cases[][3] = {{1, 1, 0}, {7, 1, 3}, {3, 3, 1}, {4, 2, 1}, {3, 1, 2}};
    for (const auto& cs : cases) {
        DwCase dc;
        dc.h = 11, dc.w = 10, dc.c = 21, dc.k = cs[0], dc.s = cs[1], dc.pad = cs[2], dc.act = Act::kReLU;
        check_depthwise(dc, all_tables(), "dw_gen");
    }
}

TEST_CASE("depthwise: channel-slice input and output, row sub-ranges") {
    const int32_t cases[][4] = {{20, 3, 1, 1}, {46, 5, 2, 2}, {12, 3, 2, 3}, {37, 5, 1, 4}, {8, 7, 1, 5}, {4, 3, 1, 2}};
    for (const auto& cs : cases) {
        DwCase dc;
        dc.h = 15, dc.w = 13, dc.c = cs[0], dc.k = cs[1], dc.s = cs[2], dc.pad = cs[1] / 2, dc.act = Act::kHardSwish;
        dc.row_chunk = cs[3], dc.in_extra[0] = 4, dc.in_extra[1] = 3, dc.out_extra[0] = 6, dc.out_extra[1] = 5;
        check_depthwise(dc, all_tables(), "dw_stride");
    }
}

TEST_CASE("depthwise: residual (a channel slice) added before the activation") {
    const int32_t cases[][4] = {{8, 3, 1, 0},  {12, 3, 1, 0}, {20, 3, 2, 1}, {36, 5, 1, 0},
                                {4, 5, 2, 3},  {46, 3, 1, 5}, {21, 7, 1, 0}, {16, 4, 2, 2}};
    for (const auto& cs : cases) {
        DwCase dc;
        dc.h = 17, dc.w = 19, dc.c = cs[0], dc.k = cs[1], dc.s = cs[2], dc.pad = cs[1] / 2, dc.act = kt::act_at(cs[3]);
        dc.residual = true, dc.r_extra[0] = 5, dc.r_extra[1] = 2, dc.row_chunk = 3;
        check_depthwise(dc, all_tables(), "dw_res");
    }
}

TEST_CASE("depthwise: ring buffers, output rows in bands") {
    // The single-thread executor streams rows through ring buffers (row r at r % rows): bands of output rows,
    // each computed once the ring holds the input rows it reads, must equal the whole-plane result. The rings
    // start out NaN, so a read of a row that is not (yet, or any more) in the ring shows.
    const int32_t cases[][4] = {{24, 3, 2, 2}, {12, 3, 1, 3}, {72, 5, 2, 4}, {20, 5, 1, 1}, {9, 7, 1, 2}, {5, 3, 1, 1}};
    for (const auto& cs : cases) {
        const int32_t c = cs[0], k = cs[1], s = cs[2], band = cs[3];
        const int32_t h = 23, w = 17, pad = k / 2;
        INFO("dw_ring: c=", c, " k=", k, " s=", s, " band=", band);
        auto rng = kt::rng_for("dw_ring", c, k, s, band);
        const int32_t oh = kt::out_size(h, k, s, pad), ow = kt::out_size(w, k, s, pad);
        Strided x(static_cast<int64_t>(h) * w, c);
        x.fill_random(rng);
        const std::vector<float> wt = kt::randn(rng, static_cast<size_t>(c) * k * k, 0.3f);
        const std::vector<float> bias = kt::randn(rng, static_cast<size_t>(c));
        // Odd bands also add a residual (a whole plane, indexed by output row, not through the ring).
        Strided r(static_cast<int64_t>(oh) * ow, c, 1, 2);
        r.fill_random(rng);
        r.fill_outside(kNaN);
        ghostfast::DepthwiseArgs args;
        args.in_h = h, args.in_w = w, args.in_stride = c, args.out_h = oh, args.out_w = ow;
        args.channels = c, args.kernel = k, args.stride = s, args.pad = pad, args.act = Act::kReLU;
        if (band % 2 == 1) args.residual = r.data(), args.r_stride = r.stride();
        Strided ref(static_cast<int64_t>(oh) * ow, c);
        {
            ghostfast::DepthwiseArgs ra = args;
            ra.in = x.data(), ra.out = ref.data(), ra.out_stride = c;
            ghostfast::reference::depthwise(ra, wt.data(), bias.data());
        }
        const int32_t rows_in = (band - 1) * s + k + 1;  // not a divisor of h: bands wrap around the ring's end
        const int32_t rows_out = band + 1;
        for (const KernelTable* t : kt::tables()) {
            INFO("table ", std::string(t->isa));
            kt::count_case();
            const kt::Packed packed = kt::pack_depthwise(*t, wt.data(), bias.data(), c, k);
            Strided ring_in(static_cast<int64_t>(rows_in) * w, c), ring_out(static_cast<int64_t>(rows_out) * ow, c, 0, 2);
            ring_in.fill_slice(kNaN);
            ring_out.fill_outside(kGuard);
            ring_out.fill_slice(kNaN);
            ring_out.snapshot();
            Strided got(static_cast<int64_t>(oh) * ow, c);
            got.fill_slice(kNaN);
            ghostfast::DepthwiseArgs ta = args;
            ta.in = ring_in.data(), ta.in_ring = rows_in, ta.in_stride = ring_in.stride();
            ta.out = ring_out.data(), ta.out_ring = rows_out, ta.out_stride = ring_out.stride();
            ta.packed = packed.data();
            for (int32_t y0 = 0; y0 < oh; y0 += band) {
                const int32_t y1 = y0 + band < oh ? y0 + band : oh;
                const int32_t r_lo = y0 * s - pad > 0 ? y0 * s - pad : 0;
                const int32_t r_hi = (y1 - 1) * s - pad + k < h ? (y1 - 1) * s - pad + k : h;
                for (int32_t r = r_lo; r < r_hi; ++r)
                    for (int32_t px = 0; px < w; ++px)
                        for (int32_t ch = 0; ch < c; ++ch)
                            ring_in.at(static_cast<int64_t>(r % rows_in) * w + px, ch) =
                                x.at(static_cast<int64_t>(r) * w + px, ch);
                t->depthwise(ta, y0, y1);
                for (int32_t y = y0; y < y1; ++y)
                    for (int32_t px = 0; px < ow; ++px)
                        for (int32_t ch = 0; ch < c; ++ch)
                            got.at(static_cast<int64_t>(y) * ow + px, ch) =
                                ring_out.at(static_cast<int64_t>(y % rows_out) * ow + px, ch);
            }
            const std::string err = kt::compare(got, ref);
            CHECK_MESSAGE(err.empty(), err);
            CHECK_MESSAGE(ring_out.outside_unchanged(), "wrote outside the output ring's slice");
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Dense conv

TEST_CASE("conv: the stems, 224 x 224 x 3, stride 2") {
    for (const int32_t oc : {16, 24, 32, 40}) {
        ConvCase cc;
        cc.h = 224, cc.w = 224, cc.ic = 3, cc.oc = oc, cc.k = 3, cc.s = 2, cc.pad = 1, cc.act = Act::kHardSwish;
        cc.planar = oc % 16 == 0;  // both the NHWC (in_stride 3) and the planar specialisation
        check_conv(cc, all_tables(), "stem");
    }
}

TEST_CASE("conv: planar NCHW input matches NHWC") {
    const int32_t cases[][5] = {{17, 23, 3, 20, 1}, {9, 8, 5, 8, 2}, {17, 23, 3, 24, 2},
                                {15, 16, 3, 40, 2}, {8, 9, 3, 32, 2}, {33, 31, 3, 16, 2}};
    for (const auto& cs : cases) {
        ConvCase cc;
        cc.h = cs[0], cc.w = cs[1], cc.ic = cs[2], cc.oc = cs[3], cc.s = cs[4], cc.k = 3, cc.pad = 1;
        cc.act = Act::kHardSwish, cc.planar = true;
        check_conv(cc, all_tables(), "conv_planar");
    }
}

TEST_CASE("conv: in_c x out_c x kernel/stride/pad grid") {
    const int32_t shapes[][2] = {{1, 1}, {7, 7}, {13, 15}, {16, 9}, {15, 15}};
    const int32_t geoms[][3] = {{3, 2, 1}, {3, 1, 1}, {5, 2, 2}, {1, 1, 0}, {3, 2, 0}, {5, 1, 1}};
    int i = 0;
    for (const int32_t ic : {1, 3, 8, 17}) {
        for (const int32_t oc : {1, 5, 8, 16, 20, 33, 40, 70}) {
            for (const auto& g : geoms) {
                const int idx = i++;
                // Two thirds of the Python grid's 192 combinations (it runs every third); the rest cost qemu time.
                if (idx % 3 == 2) continue;
                ConvCase cc;
                cc.h = shapes[idx % 5][0], cc.w = shapes[idx % 5][1];
                cc.ic = ic, cc.oc = oc, cc.k = g[0], cc.s = g[1], cc.pad = g[2], cc.act = kt::act_at(idx);
                if (cc.h + 2 * cc.pad < cc.k || cc.w + 2 * cc.pad < cc.k) continue;
                cc.planar = idx % 4 == 1;
                check_conv(cc, all_tables(), "conv");
            }
        }
    }
}

TEST_CASE("conv: every output channel count up to two panels and a vector past them") {
    for (const KernelTable* t : kt::tables()) {
        const int32_t nr = t->pointwise_nr, w = t->vector_floats;
        for (int32_t oc = 1; oc <= 2 * nr + w + 1; ++oc) {
            ConvCase cc;
            cc.h = 9, cc.w = 11, cc.ic = 3, cc.oc = oc, cc.k = 3, cc.s = 2, cc.pad = 1, cc.act = kt::act_at(oc);
            cc.planar = oc % 2 == 0, cc.out_extra[1] = oc % 3;
            check_conv(cc, {t}, "conv_oc");
            cc.ic = 5, cc.s = 1, cc.planar = false;
            check_conv(cc, {t}, "conv_oc");
        }
    }
}

TEST_CASE("conv: channel-slice input and output, row sub-ranges, every activation") {
    for (const Act act : kt::kActs) {
        ConvCase cc;
        cc.h = 21, cc.w = 19, cc.ic = 3, cc.oc = 20, cc.k = 3, cc.s = 2, cc.pad = 1, cc.act = act;
        cc.in_extra[0] = 1, cc.in_extra[1] = 2, cc.out_extra[0] = 3, cc.out_extra[1] = 4, cc.row_chunk = 3;
        check_conv(cc, all_tables(), "conv_stride");
        cc.ic = 7, cc.oc = 36, cc.s = 1, cc.k = 5, cc.pad = 2, cc.row_chunk = 1;
        check_conv(cc, all_tables(), "conv_stride");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Pools

TEST_CASE("pools: every channel count, windows with and without padding") {
    const int32_t geoms[][5] = {{15, 13, 3, 2, 1}, {8, 9, 2, 2, 0}, {7, 7, 3, 1, 1},
                                {1, 1, 1, 1, 0},   {5, 6, 5, 2, 2}, {56, 55, 3, 2, 1}};
    for (const int32_t c : kt::kChannels) {
        for (const auto& g : geoms) {
            // the 56 x 55 map at a few channel counts only (qemu time)
            if (g[0] == 56 && c != 16 && c != 46 && c != 130) continue;
            PoolCase pc;
            pc.h = g[0], pc.w = g[1], pc.c = c, pc.k = g[2], pc.s = g[3], pc.pad = g[4];
            check_pools(pc, all_tables(), "pool");
        }
    }
}

TEST_CASE("pools: channel-slice input and output, row sub-ranges") {
    for (const int32_t c : {29, 4, 8, 13}) {
        PoolCase pc;
        pc.h = 17, pc.w = 15, pc.c = c, pc.k = 3, pc.s = 2, pc.pad = 1, pc.row_chunk = 2;
        pc.in_extra[0] = 3, pc.in_extra[1] = 3, pc.out_extra[0] = 1, pc.out_extra[1] = 6;
        check_pools(pc, all_tables(), "pool_stride");
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Global average pool, add, scale_channels, activate

TEST_CASE("global_avg_pool: pixels x channels, channel-slice input") {
    for (const int64_t pixels : {1, 49, 169, 3136}) {
        for (const int32_t c : {1, 5, 16, 36, 46, 100, 130, 960}) {
            if (pixels == 3136 && c > 130) continue;  // qemu time; 49 x 960 covers the wide case
            INFO("gap: pixels=", pixels, " c=", c);
            auto rng = kt::rng_for("gap", pixels, c);
            Strided x(pixels, c, 2, 3);
            x.fill_random(rng);
            x.fill_outside(kNaN);  // see kNaN
            x.snapshot();
            Strided ref(1, c);
            ghostfast::reference::global_avg_pool(x.data(), pixels, x.stride(), c, ref.data());
            for (const KernelTable* t : kt::tables()) {
                INFO("table ", std::string(t->isa));
                kt::count_case();
                Strided out(1, c);
                out.fill_outside(kGuard);
                out.fill_slice(kNaN);
                out.snapshot();
                t->global_avg_pool(x.data(), pixels, x.stride(), c, out.data());
                const std::string err = kt::compare(out, ref);
                CHECK_MESSAGE(err.empty(), err);
                CHECK_MESSAGE(out.outside_unchanged(), "wrote past the output");
                CHECK_MESSAGE(x.all_unchanged(), "wrote into the input");
            }
        }
    }
}

TEST_CASE("add: channel slices, pixel sub-ranges, every activation") {
    std::vector<int32_t> channels = {1, 5, 12, 20, 46, 130};
    for (const Act act : kt::kActs) {
        for (const int32_t c : channels) {
            INFO("add: c=", c, " act=", kt::act_name(act));
            const int64_t p = 23;
            auto rng = kt::rng_for("add", static_cast<int>(act), c);
            Strided a(p, c, 1, 2), b(p, c, 0, 5);
            a.fill_random(rng, 4.0f);
            b.fill_random(rng, 4.0f);
            a.fill_outside(kNaN);  // see kNaN
            b.fill_outside(kNaN);
            a.snapshot();
            b.snapshot();
            Strided ref(p, c);
            for (int64_t i = 0; i < p; ++i)
                for (int32_t j = 0; j < c; ++j) ref.at(i, j) = ghostfast::reference::activate(a.at(i, j) + b.at(i, j), act);
            for (const KernelTable* t : kt::tables()) {
                INFO("table ", std::string(t->isa));
                kt::count_case();
                Strided out(p, c, 3, 1);
                out.fill_outside(kGuard);
                out.fill_slice(kNaN);
                out.snapshot();
                bool in_range = true;  // every pixel-range call wrote only its own pixels
                kt::chunked(p, 4, [&](int64_t p0, int64_t p1) {
                    out.poison_outside(p0, p1, 0, c);
                    t->add(a.data(), a.stride(), b.data(), b.stride(), out.data(), out.stride(), c, act, p0, p1);
                    in_range = in_range && out.unchanged_except(p0, p1, 0, c);
                    out.unpoison();
                });
                CHECK_MESSAGE(in_range, "a pixel-range call wrote outside its pixels");
                const std::string err = kt::compare(out, ref);
                CHECK_MESSAGE(err.empty(), err);
                CHECK_MESSAGE(out.outside_unchanged(), "wrote outside the output slice");
                CHECK_MESSAGE(a.all_unchanged(), "wrote into a");
                CHECK_MESSAGE(b.all_unchanged(), "wrote into b");
            }
        }
    }
}

TEST_CASE("add: in place, every channel tail") {
    for (const KernelTable* t : kt::tables()) {
        for (int32_t c = 1; c <= 2 * t->vector_floats + 1; ++c) {
            INFO("table ", std::string(t->isa), " add in place: c=", c);
            kt::count_case();
            auto rng = kt::rng_for("add_inplace", c);
            Strided a(31, c, 0, c % 3), b(31, c);
            a.fill_random(rng);
            b.fill_random(rng);
            Strided ref(31, c);
            for (int64_t i = 0; i < 31; ++i)
                for (int32_t j = 0; j < c; ++j) ref.at(i, j) = ghostfast::reference::activate(a.at(i, j) + b.at(i, j), Act::kReLU);
            a.snapshot();
            t->add(a.data(), a.stride(), b.data(), b.stride(), a.data(), a.stride(), c, Act::kReLU, 0, 31);
            const std::string err = kt::compare(a, ref);
            CHECK_MESSAGE(err.empty(), err);
            CHECK_MESSAGE(a.outside_unchanged(), "wrote outside the slice");
        }
    }
}

TEST_CASE("scale_channels: in place over a channel slice, pixel sub-ranges") {
    for (const int32_t c : {1, 3, 8, 20, 36, 60, 100, 130, 4, 7, 16, 17}) {
        INFO("scale_channels: c=", c);
        auto rng = kt::rng_for("scale", c);
        Strided x0(37, c, 2, 3);
        x0.fill_random(rng);
        const std::vector<float> s = kt::randn(rng, static_cast<size_t>(c));
        const std::vector<float> s_copy = s;
        Strided ref(37, c);
        for (int64_t i = 0; i < 37; ++i)
            for (int32_t j = 0; j < c; ++j) ref.at(i, j) = x0.at(i, j) * s[static_cast<size_t>(j)];
        for (const KernelTable* t : kt::tables()) {
            INFO("table ", std::string(t->isa));
            kt::count_case();
            Strided x = x0;
            x.snapshot();
            bool in_range = true;  // every pixel-range call scaled only its own pixels
            kt::chunked(37, 5, [&](int64_t p0, int64_t p1) {
                x.poison_outside(p0, p1, 0, c);
                t->scale_channels(x.data(), x.stride(), s.data(), c, p0, p1);
                in_range = in_range && x.unchanged_except(p0, p1, 0, c);
                x.unpoison();
            });
            CHECK_MESSAGE(in_range, "a pixel-range call wrote outside its pixels");
            const std::string err = kt::compare(x, ref);
            CHECK_MESSAGE(err.empty(), err);
            CHECK_MESSAGE(x.outside_unchanged(), "wrote outside the slice");
            CHECK(std::memcmp(s.data(), s_copy.data(), s.size() * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("activate: every activation, every count up to two vectors and a few more") {
    std::vector<int64_t> counts = {100, 1001};
    for (int64_t n = 1; n <= 33; ++n) counts.push_back(n);
    for (const Act act : kt::kActs) {
        for (const int64_t count : counts) {
            INFO("activate: act=", kt::act_name(act), " count=", count);
            auto rng = kt::rng_for("act", static_cast<int>(act), count);
            Strided x0(1, count);
            x0.fill_random(rng, 6.0f);
            Strided ref(1, count);
            for (int64_t i = 0; i < count; ++i) ref.at(0, i) = ghostfast::reference::activate(x0.at(0, i), act);
            for (const KernelTable* t : kt::tables()) {
                INFO("table ", std::string(t->isa));
                kt::count_case();
                Strided x = x0;
                x.snapshot();
                t->activate(x.data(), count, act);
                const std::string err = kt::compare(x, ref);
                CHECK_MESSAGE(err.empty(), err);
                CHECK_MESSAGE(x.outside_unchanged(), "wrote past the vector's ends");
            }
        }
    }
}

TEST_CASE("activate: the vector exp keeps SiLU and sigmoid within a few ulps") {
    // Relative error against double precision over [-87, 30] (the Python suite's bound: max < 1e-6, median <
    // 1.2e-7). 200001 points as in Python, which also crosses every exp range-reduction interval.
    const int64_t count = 200001;
    std::vector<float> x(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) x[static_cast<size_t>(i)] = static_cast<float>(-87.0 + 117.0 * i / (count - 1));
    for (const Act act : {Act::kSiLU, Act::kSigmoid}) {
        for (const KernelTable* t : kt::tables()) {
            INFO("table ", std::string(t->isa), " act=", kt::act_name(act));
            kt::count_case();
            std::vector<float> y = x;
            t->activate(y.data(), count, act);
            std::vector<double> rel;
            rel.reserve(y.size());
            double worst = 0.0, worst_x = 0.0;
            for (size_t i = 0; i < y.size(); ++i) {
                const double xi = x[i];
                const double sig = 1.0 / (1.0 + std::exp(-xi));
                const double want = act == Act::kSiLU ? xi * sig : sig;
                if (std::fabs(want) <= 1e-30) continue;
                const double r = std::fabs(static_cast<double>(y[i]) - want) / std::fabs(want);
                rel.push_back(r);
                if (!(r <= worst)) worst = r, worst_x = xi;  // NaN counts as worst
            }
            std::nth_element(rel.begin(), rel.begin() + static_cast<long>(rel.size() / 2), rel.end());
            const double median = rel[rel.size() / 2];
            CHECK_MESSAGE(worst < 1e-6, "max relative error " << worst << " at x = " << worst_x);
            CHECK_MESSAGE(median < 1.2e-7, "median relative error " << median);
        }
    }
}

TEST_CASE("activate: special values (NaN in, NaN out; infinities)") {
    const float nan = kNaN, inf = std::numeric_limits<float>::infinity();
    const float in[7] = {nan, inf, -inf, 0.0f, -0.0f, 1e30f, -1e30f};
    struct Named {
        const char* name;
        const KernelTable* t;  // nullptr: the reference
    };
    std::vector<Named> impls;
    for (const KernelTable* t : kt::tables()) impls.push_back({t->isa, t});
    impls.push_back({"reference", nullptr});
    for (const Named& impl : impls) {
        INFO("table ", std::string(impl.name));
        auto run = [&](Act act) {
            std::vector<float> y(in, in + 7);
            if (impl.t)
                impl.t->activate(y.data(), 7, act);
            else
                for (float& v : y) v = ghostfast::reference::activate(v, act);
            return y;
        };
        for (const Act act : kt::kActs) {
            INFO("act=", kt::act_name(act));
            const std::vector<float> y = run(act);
            CHECK(std::isnan(y[0]));
            // Only HardSwish (inf * 0 at -inf) and SiLU (-inf / (1 + e^inf)) may make a NaN of an infinity.
            if (act != Act::kHardSwish && act != Act::kSiLU)
                for (int i = 1; i < 7; ++i) CHECK_MESSAGE(!std::isnan(y[i]), "NaN from input " << in[i]);
        }
        CHECK(run(Act::kSigmoid)[1] == 1.0f);
        CHECK(run(Act::kSigmoid)[2] < 1e-30f);
        CHECK(run(Act::kSiLU)[1] == inf);
        CHECK(run(Act::kReLU)[2] == 0.0f);
        CHECK(run(Act::kReLU6)[1] == 6.0f);
        CHECK(run(Act::kHardSigmoid)[1] == 1.0f);
        CHECK(run(Act::kHardSigmoid)[2] == 0.0f);
        CHECK(run(Act::kNone)[1] == inf);
    }
}

TEST_CASE("NaN propagates through every kernel's activation epilogue") {
    // A NaN input must give NaN outputs wherever the reference has them (its comparisons are false for NaN, so
    // NaN passes every activation); a clamp written as max(0, x) with a NaN-dropping max would give 0 instead.
    // compare() checks the NaN pattern element by element.
    for (const Act act : kt::kActs) {
        INFO("act=", kt::act_name(act));
        for (const KernelTable* t : kt::tables()) {
            INFO("table ", std::string(t->isa));
            kt::count_case();
            const int32_t c = 2 * t->vector_floats + 3;
            auto rng = kt::rng_for("nan", static_cast<int>(act), c);
            // pointwise: row 2 of A has one NaN: its every output is NaN
            {
                const int64_t m = 9;
                const int32_t k = 7;
                Strided a(m, k);
                a.fill_random(rng);
                a.at(2, 3) = kNaN;
                const std::vector<float> w = kt::randn(rng, static_cast<size_t>(c) * k), b = kt::randn(rng, c);
                ghostfast::PointwiseArgs args;
                args.a = a.data(), args.a_stride = k, args.m = m, args.k = k, args.n = c, args.act = act;
                Strided ref(m, c), out(m, c);
                args.c = ref.data(), args.c_stride = c;
                ghostfast::reference::pointwise(args, w.data(), b.data());
                const kt::Packed packed = kt::pack_pointwise(*t, w.data(), b.data(), k, c);
                args.c = out.data(), args.packed = packed.data();
                t->pointwise(args, 0, m, 0, c);
                t->pointwise(args, 2, 3, 0, c);  // the single-row path too
                const std::string err = kt::compare(out, ref);
                CHECK_MESSAGE(err.empty(), "pointwise: " << err);
            }
            // depthwise: one NaN pixel spreads to the outputs whose window covers it
            {
                const int32_t h = 7, w = 9, k = 3;
                Strided x(h * w, c);
                x.fill_random(rng);
                x.at(3 * w + 4, 1) = kNaN;
                x.at(0, c - 1) = kNaN;  // in the channel tail
                const std::vector<float> wt = kt::randn(rng, static_cast<size_t>(c) * k * k), b = kt::randn(rng, c);
                ghostfast::DepthwiseArgs args;
                args.in = x.data(), args.in_h = h, args.in_w = w, args.in_stride = c, args.out_h = h, args.out_w = w;
                args.out_stride = c, args.channels = c, args.kernel = k, args.stride = 1, args.pad = 1, args.act = act;
                Strided ref(h * w, c), out(h * w, c);
                args.out = ref.data();
                ghostfast::reference::depthwise(args, wt.data(), b.data());
                const kt::Packed packed = kt::pack_depthwise(*t, wt.data(), b.data(), c, k);
                args.out = out.data(), args.packed = packed.data();
                t->depthwise(args, 0, h);
                const std::string err = kt::compare(out, ref);
                CHECK_MESSAGE(err.empty(), "depthwise: " << err);
            }
            // add: NaN in a and in b
            {
                Strided a(5, c), b(5, c), ref(5, c), out(5, c);
                a.fill_random(rng);
                b.fill_random(rng);
                a.at(1, 0) = kNaN;
                b.at(4, c - 1) = kNaN;
                for (int64_t i = 0; i < 5; ++i)
                    for (int32_t j = 0; j < c; ++j) ref.at(i, j) = ghostfast::reference::activate(a.at(i, j) + b.at(i, j), act);
                t->add(a.data(), c, b.data(), c, out.data(), c, c, act, 0, 5);
                const std::string err = kt::compare(out, ref);
                CHECK_MESSAGE(err.empty(), "add: " << err);
            }
        }
    }
}

}  // TEST_SUITE("kernels")
