// Helpers for the kernel tests (test_kernels.cpp): the tables to sweep, seeded random data, strided NHWC slices
// with guard regions, the Python suite's closeness criterion, and packing through each table's own pack_*.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "ghostfast/kernels.h"

namespace kt {

using ghostfast::Act;
using ghostfast::KernelTable;

constexpr Act kActs[ghostfast::kActCount] = {Act::kNone,        Act::kReLU, Act::kReLU6,  Act::kHardSwish,
                                              Act::kHardSigmoid, Act::kSiLU, Act::kSigmoid};
std::string act_name(Act act);  // a std::string: doctest prints a const char* as a pointer
inline Act act_at(int i) { return kActs[((i % ghostfast::kActCount) + ghostfast::kActCount) % ghostfast::kActCount]; }

// Every table this CPU and build can run (ghostfast::available_kernel_tables), generic first.
const std::vector<const KernelTable*>& tables();
// The channel counts of the Python suite: every kind of vector tail for 4-, 8- and 16-float vectors.
extern const std::vector<int32_t> kChannels;

// A generator seeded from the test's name and parameters (FNV-1a), so each case draws the same data on every
// run and on every machine (libstdc++'s distributions are the same on x86-64 and AArch64).
std::mt19937 rng_from(const std::string& tag, const std::vector<int64_t>& params);
template <class... T>
std::mt19937 rng_for(const std::string& tag, T... params) {
    return rng_from(tag, {static_cast<int64_t>(params)...});
}
std::vector<float> randn(std::mt19937& rng, size_t n, float scale = 1.0f);

// A [rows, cols] slice of a wider row-major buffer: each row holds `before` floats, the slice's `cols`, then
// `after` floats (row stride before + cols + after), and kEdge further floats lie before the first row and after
// the last. For an NHWC plane, rows = h * w pixels and cols = channels: the layout of a channel slice (concat /
// split) that the kernels read and write in place. Everything outside the slice is a guard region: snapshot()
// records the whole buffer, and outside_unchanged() / all_unchanged() say whether a kernel wrote where it must not.
class Strided {
public:
    static constexpr int64_t kEdge = 37;  // past any vector width: catches a full-vector store of a last tail

    Strided() = default;
    Strided(int64_t rows, int64_t cols, int64_t before = 0, int64_t after = 0);

    int64_t rows() const { return rows_; }
    int64_t cols() const { return cols_; }
    int64_t stride() const { return stride_; }
    float* data() { return buf_.data() + origin_; }
    const float* data() const { return buf_.data() + origin_; }
    float& at(int64_t r, int64_t c) { return buf_[origin_ + r * stride_ + c]; }
    float at(int64_t r, int64_t c) const { return buf_[origin_ + r * stride_ + c]; }

    // Fills: the whole buffer (guards included) with normal values; the slice only; the guards only.
    void fill_random(std::mt19937& rng, float scale = 1.0f);
    void fill_slice(float v);
    void fill_outside(float v);
    void copy_slice_from(const Strided& other);  // same rows x cols

    void snapshot();
    bool outside_unchanged() const;  // bitwise, against the snapshot
    bool all_unchanged() const;
    // Unchanged except in the slice's block of rows [r0, r1) x columns [c0, c1): what one sub-range call of a
    // kernel may write (the executor's threads write disjoint blocks of one output at the same time).
    bool unchanged_except(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const;
    // Around one sub-range call: poison_outside() keeps the slice's values, overwrites every slice element
    // outside the block with a marker and snapshots that; unchanged_except() then also catches a call that
    // rewrites other rows with the very values they already hold; unpoison() puts the kept values back.
    void poison_outside(int64_t r0, int64_t r1, int64_t c0, int64_t c1);
    void unpoison();

private:
    bool in_slice(int64_t i) const;
    std::vector<float> buf_, snap_, kept_;
    int64_t block_[4] = {0, 0, 0, 0};
    int64_t rows_ = 0, cols_ = 0, before_ = 0, stride_ = 0, origin_ = 0;
};

// The Python suite's assert_close on the slices' values: max|opt - ref| <= rel * max(1, max|ref|), and the same
// non-finite pattern (NaN where the reference has NaN, inf where it has inf). Returns "" when close, otherwise a
// description of the worst element (for CHECK_MESSAGE).
std::string compare(const float* opt, int64_t opt_stride, const float* ref, int64_t ref_stride, int64_t rows,
                    int64_t cols, double rel = 1e-5);
inline std::string compare(const Strided& opt, const Strided& ref, double rel = 1e-5) {
    return compare(opt.data(), opt.stride(), ref.data(), ref.stride(), opt.rows(), opt.cols(), rel);
}

// 64-byte aligned packed weights (the engine's contract for packed buffers), filled by a table's pack_*.
class Packed {
public:
    explicit Packed(size_t floats);
    ~Packed();
    Packed(Packed&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
    Packed(const Packed&) = delete;
    Packed& operator=(const Packed&) = delete;
    Packed& operator=(Packed&&) = delete;
    float* data() { return p_; }
    const float* data() const { return p_; }
    size_t size() const { return n_; }

private:
    float* p_ = nullptr;
    size_t n_ = 0;
};
Packed pack_pointwise(const KernelTable& t, const float* w /* [n][k] */, const float* bias, int32_t k, int32_t n);
Packed pack_depthwise(const KernelTable& t, const float* w /* [c][k][k] */, const float* bias, int32_t channels,
                      int32_t kernel);
Packed pack_conv(const KernelTable& t, const float* w /* [oc][ic][k][k] */, const float* bias, int32_t in_c,
                 int32_t out_c, int32_t kernel);

// Calls fn(begin, end) over [0, total) in chunks of `chunk` (0: one call), as the executor's threads split an op.
template <class Fn>
void chunked(int64_t total, int64_t chunk, Fn&& fn) {
    if (chunk <= 0 || chunk >= total) {
        fn(int64_t{0}, total);
        return;
    }
    for (int64_t b = 0; b < total; b += chunk) fn(b, b + chunk < total ? b + chunk : total);
}

// Calls fn(y0, y1) over output rows [0, out_h) in chunks of `chunk` (0: one call), as the executor's threads split a
// window op, and says whether every call wrote only its own rows (of out_w pixels, all of out's columns) of `out`.
template <class Fn>
bool rows_in_range(Strided& out, int32_t out_h, int32_t out_w, int64_t chunk, Fn&& fn) {
    bool ok = true;
    chunked(out_h, chunk, [&](int64_t y0, int64_t y1) {
        if (chunk) out.poison_outside(y0 * out_w, y1 * out_w, 0, out.cols());
        fn(static_cast<int32_t>(y0), static_cast<int32_t>(y1));
        if (chunk) ok = ok && out.unchanged_except(y0 * out_w, y1 * out_w, 0, out.cols()), out.unpoison();
    });
    return ok;
}

// Output size of a window op (the formula of kernels.h).
inline int32_t out_size(int32_t in, int32_t k, int32_t s, int32_t pad) { return (in + 2 * pad - k) / s + 1; }

// Comparisons made (one per table and case), reported by the suite's last test.
void count_case();
int64_t case_count();

}  // namespace kt
