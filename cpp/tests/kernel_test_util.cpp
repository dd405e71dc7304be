#include "kernel_test_util.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace kt {

std::string act_name(Act act) {
    switch (act) {
        case Act::kNone: return "none";
        case Act::kReLU: return "relu";
        case Act::kReLU6: return "relu6";
        case Act::kHardSwish: return "hardswish";
        case Act::kHardSigmoid: return "hardsigmoid";
        case Act::kSiLU: return "silu";
        case Act::kSigmoid: return "sigmoid";
    }
    return "?";
}

const std::vector<const KernelTable*>& tables() {
    static const std::vector<const KernelTable*> list = [] {
        const int32_t n = ghostfast::available_kernel_tables(nullptr, 0);
        std::vector<const KernelTable*> v(static_cast<size_t>(n > 0 ? n : 0));
        if (n > 0) ghostfast::available_kernel_tables(v.data(), n);
        return v;
    }();
    return list;
}

const std::vector<int32_t> kChannels = {1, 3, 5, 8, 12, 16, 20, 36, 46, 60, 92, 100, 130};

std::mt19937 rng_from(const std::string& tag, const std::vector<int64_t>& params) {
    uint64_t h = 1469598103934665603ull;
    auto mix = [&h](uint64_t byte) {
        h ^= byte;
        h *= 1099511628211ull;
    };
    for (unsigned char ch : tag) mix(ch);
    for (int64_t p : params) {
        mix(0x7c);  // a separator, so (1, 23) and (12, 3) differ
        for (int i = 0; i < 8; ++i) mix((static_cast<uint64_t>(p) >> (8 * i)) & 0xff);
    }
    std::seed_seq seq{static_cast<uint32_t>(h), static_cast<uint32_t>(h >> 32)};
    return std::mt19937(seq);
}

std::vector<float> randn(std::mt19937& rng, size_t n, float scale) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(n);
    for (float& x : v) x = dist(rng) * scale;
    return v;
}

Strided::Strided(int64_t rows, int64_t cols, int64_t before, int64_t after)
    : rows_(rows), cols_(cols), before_(before), stride_(before + cols + after) {
    origin_ = kEdge + before;
    buf_.assign(static_cast<size_t>(2 * kEdge + rows * stride_), 0.0f);
}

bool Strided::in_slice(int64_t i) const {
    const int64_t j = i - kEdge;
    if (j < 0 || j >= rows_ * stride_) return false;
    const int64_t c = j % stride_ - before_;
    return c >= 0 && c < cols_;
}

void Strided::fill_random(std::mt19937& rng, float scale) {
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (float& x : buf_) x = dist(rng) * scale;
}

void Strided::fill_slice(float v) {
    for (int64_t r = 0; r < rows_; ++r)
        for (int64_t c = 0; c < cols_; ++c) at(r, c) = v;
}

void Strided::fill_outside(float v) {
    for (size_t i = 0; i < buf_.size(); ++i)
        if (!in_slice(static_cast<int64_t>(i))) buf_[i] = v;
}

void Strided::copy_slice_from(const Strided& other) {
    REQUIRE(other.rows_ == rows_);
    REQUIRE(other.cols_ == cols_);
    for (int64_t r = 0; r < rows_; ++r)
        for (int64_t c = 0; c < cols_; ++c) at(r, c) = other.at(r, c);
}

void Strided::snapshot() { snap_ = buf_; }

bool Strided::outside_unchanged() const {
    if (snap_.size() != buf_.size()) return false;
    for (size_t i = 0; i < buf_.size(); ++i)
        if (!in_slice(static_cast<int64_t>(i)) && std::memcmp(&buf_[i], &snap_[i], sizeof(float)) != 0) return false;
    return true;
}

bool Strided::unchanged_except(int64_t r0, int64_t r1, int64_t c0, int64_t c1) const {
    if (snap_.size() != buf_.size()) return false;
    for (size_t i = 0; i < buf_.size(); ++i) {
        if (std::memcmp(&buf_[i], &snap_[i], sizeof(float)) == 0) continue;
        const int64_t j = static_cast<int64_t>(i) - kEdge;
        if (j < 0 || j >= rows_ * stride_) return false;
        const int64_t r = j / stride_, c = j % stride_ - before_;
        if (r < r0 || r >= r1 || c < c0 || c >= c1) return false;
    }
    return true;
}

void Strided::poison_outside(int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    kept_ = buf_;
    block_[0] = r0, block_[1] = r1, block_[2] = c0, block_[3] = c1;
    for (int64_t r = 0; r < rows_; ++r)
        for (int64_t c = 0; c < cols_; ++c)
            if (r < r0 || r >= r1 || c < c0 || c >= c1) at(r, c) = -777.25f;
    snapshot();
}

void Strided::unpoison() {
    for (int64_t r = 0; r < rows_; ++r)
        for (int64_t c = 0; c < cols_; ++c)
            if (r < block_[0] || r >= block_[1] || c < block_[2] || c >= block_[3])
                at(r, c) = kept_[static_cast<size_t>(origin_ + r * stride_ + c)];
}

bool Strided::all_unchanged() const {
    return snap_.size() == buf_.size() && std::memcmp(buf_.data(), snap_.data(), buf_.size() * sizeof(float)) == 0;
}

std::string compare(const float* opt, int64_t opt_stride, const float* ref, int64_t ref_stride, int64_t rows,
                    int64_t cols, double rel) {
    double scale = 1.0, err = 0.0;
    int64_t worst_r = -1, worst_c = -1;
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t c = 0; c < cols; ++c) {
            const double o = opt[r * opt_stride + c], f = ref[r * ref_stride + c];
            // A different non-finite pattern (a NaN that vanished or appeared, an unwritten NaN-filled output) is
            // reported as the worst possible error.
            if (std::isnan(o) != std::isnan(f) || std::isinf(o) != std::isinf(f) ||
                (std::isinf(o) && (o > 0) != (f > 0))) {
                char msg[200];
                std::snprintf(msg, sizeof msg, "non-finite mismatch at row %lld col %lld: got %.9g, want %.9g",
                              static_cast<long long>(r), static_cast<long long>(c), o, f);
                return msg;
            }
            if (!std::isfinite(f)) continue;
            if (std::fabs(f) > scale) scale = std::fabs(f);
            const double e = std::fabs(o - f);
            if (e > err) err = e, worst_r = r, worst_c = c;
        }
    }
    if (err <= rel * scale) return "";
    char msg[240];
    std::snprintf(msg, sizeof msg, "max abs error %.3g > %g * %.3g at row %lld col %lld (got %.9g, want %.9g)", err,
                  rel, scale, static_cast<long long>(worst_r), static_cast<long long>(worst_c),
                  opt[worst_r * opt_stride + worst_c], ref[worst_r * ref_stride + worst_c]);
    return msg;
}

// The packed buffer is followed by guard floats: a pack_* that writes past the size its *_packed_size reported
// fails the check in pack_checked.
static constexpr size_t kPackGuard = 64;
static constexpr float kPackGuardValue = -31337.25f;

Packed::Packed(size_t floats) : n_(floats) {
    const size_t bytes = ((floats + kPackGuard) * sizeof(float) + 63) / 64 * 64;
    p_ = static_cast<float*>(std::aligned_alloc(64, bytes));
    if (!p_) throw std::bad_alloc();
    for (size_t i = 0; i < floats; ++i) p_[i] = std::nanf("");  // padding the packer leaves unset shows up
    for (size_t i = floats; i < floats + kPackGuard; ++i) p_[i] = kPackGuardValue;
}

Packed::~Packed() { std::free(p_); }

static void check_pack_guard(const Packed& p, const KernelTable& t, const char* what) {
    bool ok = true;
    for (size_t i = p.size(); i < p.size() + kPackGuard; ++i) ok = ok && p.data()[i] == kPackGuardValue;
    const std::string msg = std::string(t.isa) + ": " + what + " wrote past its packed size";
    CHECK_MESSAGE(ok, msg);
}

Packed pack_pointwise(const KernelTable& t, const float* w, const float* bias, int32_t k, int32_t n) {
    Packed p(t.pointwise_packed_size(k, n));
    t.pack_pointwise(w, bias, k, n, p.data());
    check_pack_guard(p, t, "pack_pointwise");
    return p;
}

Packed pack_depthwise(const KernelTable& t, const float* w, const float* bias, int32_t channels, int32_t kernel) {
    Packed p(t.depthwise_packed_size(channels, kernel));
    t.pack_depthwise(w, bias, channels, kernel, p.data());
    check_pack_guard(p, t, "pack_depthwise");
    return p;
}

Packed pack_conv(const KernelTable& t, const float* w, const float* bias, int32_t in_c, int32_t out_c,
                 int32_t kernel) {
    Packed p(t.conv_packed_size(in_c, out_c, kernel));
    t.pack_conv(w, bias, in_c, out_c, kernel, p.data());
    check_pack_guard(p, t, "pack_conv");
    return p;
}

static int64_t g_cases = 0;
void count_case() { ++g_cases; }
int64_t case_count() { return g_cases; }

}  // namespace kt
