// Naive scalar references: the ground truth every optimized table is tested against. Plain loops over the
// definitions in kernels.h, PyTorch weight layouts, sums accumulated in double so that the reference is the
// most accurate result in any comparison (the optimized paths sum in float, in another order).
#include <cmath>
#include <limits>

#include "ghostfast/kernels.h"

namespace ghostfast {
namespace reference {

float activate(float x, Act act) {
    // Written with comparisons that are false for NaN, so NaN passes through every activation.
    switch (act) {
        case Act::kNone:
            return x;
        case Act::kReLU:
            return x < 0.0f ? 0.0f : x;
        case Act::kReLU6:
            return x < 0.0f ? 0.0f : (x > 6.0f ? 6.0f : x);
        case Act::kHardSwish: {
            const float t = x + 3.0f;
            const float r6 = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
            return x * r6 / 6.0f;
        }
        case Act::kHardSigmoid: {
            const float t = x + 3.0f;
            const float r6 = t < 0.0f ? 0.0f : (t > 6.0f ? 6.0f : t);
            return r6 / 6.0f;
        }
        case Act::kSiLU:
            return x / (1.0f + std::exp(-x));
        case Act::kSigmoid:
            return 1.0f / (1.0f + std::exp(-x));
    }
    return x;
}

void pointwise(const PointwiseArgs& args, const float* w, const float* bias) {
    for (int64_t m = 0; m < args.m; ++m) {
        const float* a = args.a + m * args.a_stride;
        for (int32_t n = 0; n < args.n; ++n) {
            double sum = bias ? bias[n] : 0.0;
            for (int32_t k = 0; k < args.k; ++k)
                sum += static_cast<double>(a[k * args.a_kstride]) * w[static_cast<int64_t>(n) * args.k + k];
            if (args.raw) args.raw[m * args.raw_stride + n] = static_cast<float>(sum);
            if (args.residual) sum += args.residual[m * args.r_stride + n];
            args.c[m * args.c_stride + n] = activate(static_cast<float>(sum), args.act);
        }
    }
}

void depthwise(const DepthwiseArgs& args, const float* w, const float* bias) {
    depthwise_rows(args, w, bias, 0, args.out_h);
}

void depthwise_rows(const DepthwiseArgs& args, const float* w, const float* bias, int32_t y_begin, int32_t y_end) {
    const int32_t k = args.kernel;
    for (int32_t y = y_begin; y < y_end; ++y) {
        for (int32_t x = 0; x < args.out_w; ++x) {
            for (int32_t c = 0; c < args.channels; ++c) {
                double sum = bias ? bias[c] : 0.0;
                for (int32_t i = 0; i < k; ++i) {
                    const int32_t iy = y * args.stride - args.pad + i;
                    if (iy < 0 || iy >= args.in_h) continue;
                    for (int32_t j = 0; j < k; ++j) {
                        const int32_t ix = x * args.stride - args.pad + j;
                        if (ix < 0 || ix >= args.in_w) continue;
                        const int64_t row = args.in_ring > 0 ? iy % args.in_ring : iy;
                        const float v = args.in[(row * args.in_w + ix) * args.in_stride + c];
                        sum += static_cast<double>(v) * w[(static_cast<int64_t>(c) * k + i) * k + j];
                    }
                }
                const int64_t px = static_cast<int64_t>(y) * args.out_w + x;
                if (args.residual) sum += args.residual[px * args.r_stride + c];
                const int64_t out_px = static_cast<int64_t>(args.out_ring > 0 ? y % args.out_ring : y) * args.out_w + x;
                args.out[out_px * args.out_stride + c] = activate(static_cast<float>(sum), args.act);
            }
        }
    }
}

void conv(const ConvArgs& args, const float* w, const float* bias) {
    const int32_t k = args.kernel;
    for (int32_t y = 0; y < args.out_h; ++y) {
        for (int32_t x = 0; x < args.out_w; ++x) {
            for (int32_t oc = 0; oc < args.out_c; ++oc) {
                double sum = bias ? bias[oc] : 0.0;
                for (int32_t ic = 0; ic < args.in_c; ++ic) {
                    for (int32_t i = 0; i < k; ++i) {
                        const int32_t iy = y * args.stride - args.pad + i;
                        if (iy < 0 || iy >= args.in_h) continue;
                        for (int32_t j = 0; j < k; ++j) {
                            const int32_t ix = x * args.stride - args.pad + j;
                            if (ix < 0 || ix >= args.in_w) continue;
                            const float v = args.in[(static_cast<int64_t>(iy) * args.in_w + ix) * args.in_stride + ic * args.in_c_stride];
                            sum += static_cast<double>(v) * w[((static_cast<int64_t>(oc) * args.in_c + ic) * k + i) * k + j];
                        }
                    }
                }
                args.out[(static_cast<int64_t>(y) * args.out_w + x) * args.out_stride + oc] =
                    activate(static_cast<float>(sum), args.act);
            }
        }
    }
}

namespace {

// Shared by both pools: folds the valid (unpadded) taps of each output element with `step`, then `finish`.
template <class Step, class Finish>
void pool(const PoolArgs& args, double init, Step step, Finish finish) {
    for (int32_t y = 0; y < args.out_h; ++y) {
        for (int32_t x = 0; x < args.out_w; ++x) {
            for (int32_t c = 0; c < args.channels; ++c) {
                double acc = init;
                for (int32_t i = 0; i < args.kernel; ++i) {
                    const int32_t iy = y * args.stride - args.pad + i;
                    if (iy < 0 || iy >= args.in_h) continue;
                    for (int32_t j = 0; j < args.kernel; ++j) {
                        const int32_t ix = x * args.stride - args.pad + j;
                        if (ix < 0 || ix >= args.in_w) continue;
                        acc = step(acc, args.in[(static_cast<int64_t>(iy) * args.in_w + ix) * args.in_stride + c]);
                    }
                }
                args.out[(static_cast<int64_t>(y) * args.out_w + x) * args.out_stride + c] = finish(acc);
            }
        }
    }
}

}  // namespace

void max_pool(const PoolArgs& args) {
    // Padding is -inf (PyTorch): padded taps never win.
    pool(
        args, -std::numeric_limits<double>::infinity(), [](double m, float v) { return v > m ? v : m; },
        [](double m) { return static_cast<float>(m); });
}

void avg_pool(const PoolArgs& args) {
    const double divisor = static_cast<double>(args.kernel) * args.kernel;  // count_include_pad=True
    pool(
        args, 0.0, [](double s, float v) { return s + v; },
        [divisor](double s) { return static_cast<float>(s / divisor); });
}

void global_avg_pool(const float* in, int64_t pixels, int64_t in_stride, int32_t channels, float* out) {
    for (int32_t c = 0; c < channels; ++c) {
        double sum = 0.0;
        for (int64_t p = 0; p < pixels; ++p) sum += in[p * in_stride + c];
        out[c] = pixels > 0 ? static_cast<float>(sum / static_cast<double>(pixels)) : 0.0f;
    }
}

}  // namespace reference
}  // namespace ghostfast
