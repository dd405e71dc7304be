// Kernel families of the native engine: one function table per ISA, chosen once at start-up.
//
// Activations are NHWC planes of one image with a pixel stride, so a kernel can read or write a channel slice
// of a wider buffer (this is how concat and split cost nothing): pixel (y, x), channel c of a plane lives at
// data[(y * w + x) * stride + c]. Weights are packed once, at engine build time, by the table's own pack_*
// functions (the layout depends on the ISA's vector width), from PyTorch's layouts with BN already folded.
//
// Every kernel works on a sub-range of its output (rows, or rows x column panels) so the executor can split an
// op across threads; ranges never overlap, so kernels need no synchronisation.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ghostfast {

enum class Act : int32_t {
    kNone = 0,
    kReLU = 1,
    kReLU6 = 2,
    kHardSwish = 3,    // x * relu6(x + 3) / 6
    kHardSigmoid = 4,  // relu6(x + 3) / 6
    kSiLU = 5,         // x * sigmoid(x)
    kSigmoid = 6,
};
constexpr int32_t kActCount = 7;

// C[m, n] = act(sum_k A[m, k] * W[n, k] + bias[n] + R[m, n]) for m in [m_begin, m_end), n in [n_begin, n_end).
// A is M pixels x K channels; row m starts at a + m * a_stride. Used for 1x1 convolutions (M = H*W of one image
// or of the whole batch when the planes are contiguous), for each group of a grouped 1x1 conv, and for linear
// layers (M = batch). n_begin must be a multiple of the table's pointwise_nr (n_end may be any value <= n).
struct PointwiseArgs {
    const float* a = nullptr;
    int64_t a_stride = 0;
    float* c = nullptr;
    int64_t c_stride = 0;
    const float* residual = nullptr;  // nullable; added before the activation
    int64_t r_stride = 0;
    // Nullable: also receives sum + bias, before the residual and the activation (row m at raw + m * raw_stride).
    // A Ghost module with a residual keeps its primary output here for the cheap depthwise to read, while C gets
    // the sum with the residual: no separate pass adds the residual afterwards.
    float* raw = nullptr;
    int64_t raw_stride = 0;
    int64_t m = 0;
    int32_t k = 0;
    int32_t n = 0;
    const float* packed = nullptr;  // from pack_pointwise
    Act act = Act::kNone;
    // A's k-th element of row m is a[m * a_stride + k * a_kstride]: a 1x1 that reads its input through a channel
    // shuffle (ShuffleNetV1's grouped 1x1 after the shuffle: group g's k-th input channel is channel k * groups + g
    // of the unshuffled tensor), so that the shuffle itself never runs.
    int64_t a_kstride = 1;
};

// Depthwise convolution (groups == channels) of one image, square kernel, symmetric zero padding:
// out[y, x, c] = act(bias[c] + sum_{i,j} in[y*s - pad + i, x*s - pad + j, c] * w[c, i, j]),
// for output rows [y_begin, y_end). out_h = (in_h + 2*pad - kernel) / stride + 1 (likewise out_w).
// `out` must not overlap the channels of `in` that are read (other channels of the same buffer are fine).
struct DepthwiseArgs {
    const float* in = nullptr;
    int32_t in_h = 0, in_w = 0;
    int64_t in_stride = 0;
    float* out = nullptr;
    int32_t out_h = 0, out_w = 0;
    int64_t out_stride = 0;
    int32_t channels = 0;
    int32_t kernel = 3;
    int32_t stride = 1;
    int32_t pad = 1;
    const float* packed = nullptr;  // from pack_depthwise
    Act act = Act::kNone;
    // Nullable: residual[y, x, c] (an out_h x out_w plane, pixel stride r_stride) is added before the activation.
    const float* residual = nullptr;
    int64_t r_stride = 0;
    // Ring buffers (0: a whole plane): input row r lives at in + (r % in_ring) * in_w * in_stride, output row y
    // at out + (y % out_ring) * out_w * out_stride. The single-thread executor streams a Ghost module's rows
    // through a ring of a few rows into the depthwise that follows it, so the full-size intermediate is never
    // written.
    int32_t in_ring = 0;
    int32_t out_ring = 0;
};

// Dense (groups == 1) k x k convolution of one image, symmetric zero padding, for output rows
// [y_begin, y_end): the 3x3 stride-2 stems (3 input channels) and any other full convolution.
struct ConvArgs {
    const float* in = nullptr;
    int32_t in_h = 0, in_w = 0, in_c = 0;
    int64_t in_stride = 0;    // floats from one input pixel to the next (NHWC: >= in_c; planar NCHW: 1)
    int64_t in_c_stride = 1;  // floats from one input channel to the next (NHWC: 1; planar NCHW: in_h * in_w)
    float* out = nullptr;
    int32_t out_h = 0, out_w = 0, out_c = 0;
    int64_t out_stride = 0;
    int32_t kernel = 3;
    int32_t stride = 1;
    int32_t pad = 1;
    const float* packed = nullptr;  // from pack_conv
    Act act = Act::kNone;
};

// Max or average pooling of one image, square window, symmetric padding, output rows [y_begin, y_end).
// Average pooling divides by kernel*kernel (PyTorch's count_include_pad=True, the zoo's only use).
struct PoolArgs {
    const float* in = nullptr;
    int32_t in_h = 0, in_w = 0;
    int64_t in_stride = 0;
    float* out = nullptr;
    int32_t out_h = 0, out_w = 0;
    int64_t out_stride = 0;
    int32_t channels = 0;
    int32_t kernel = 3;
    int32_t stride = 2;
    int32_t pad = 1;
};

struct KernelTable {
    const char* isa;          // "generic", "avx2", "avx512"
    int32_t vector_floats;    // floats per SIMD register (4, 8, 16)
    int32_t pointwise_nr;     // column-panel width of packed pointwise weights

    // Packing: sizes are in floats. Weights arrive in PyTorch layout, BN folded; bias may be null (zeros).
    size_t (*pointwise_packed_size)(int32_t k, int32_t n);
    void (*pack_pointwise)(const float* w /* [n][k] */, const float* bias, int32_t k, int32_t n, float* packed);
    size_t (*depthwise_packed_size)(int32_t channels, int32_t kernel);
    void (*pack_depthwise)(const float* w /* [c][k][k] */, const float* bias, int32_t channels, int32_t kernel,
                           float* packed);
    size_t (*conv_packed_size)(int32_t in_c, int32_t out_c, int32_t kernel);
    void (*pack_conv)(const float* w /* [out_c][in_c][k][k] */, const float* bias, int32_t in_c, int32_t out_c,
                      int32_t kernel, float* packed);

    void (*pointwise)(const PointwiseArgs& args, int64_t m_begin, int64_t m_end, int32_t n_begin, int32_t n_end);
    void (*depthwise)(const DepthwiseArgs& args, int32_t y_begin, int32_t y_end);
    void (*conv)(const ConvArgs& args, int32_t y_begin, int32_t y_end);
    void (*max_pool)(const PoolArgs& args, int32_t y_begin, int32_t y_end);
    void (*avg_pool)(const PoolArgs& args, int32_t y_begin, int32_t y_end);

    // out[c] = mean over the h*w pixels of in[., c] (in: h*w pixels with pixel stride in_stride).
    void (*global_avg_pool)(const float* in, int64_t pixels, int64_t in_stride, int32_t channels, float* out);
    // out[p, c] = act(a[p, c] + b[p, c]) for p in [p_begin, p_end): residual adds that no kernel could absorb.
    void (*add)(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out,
                int64_t out_stride, int32_t channels, Act act, int64_t p_begin, int64_t p_end);
    // x[p, c] *= scale[c] in place for p in [p_begin, p_end): the squeeze-and-excitation gate.
    void (*scale_channels)(float* x, int64_t stride, const float* scale, int32_t channels, int64_t p_begin,
                           int64_t p_end);
    // x[i] = act(x[i]) in place, contiguous: activations that no producer could absorb (and tiny vectors).
    void (*activate)(float* x, int64_t count, Act act);
};

// The table for the best ISA this CPU supports (read once from cpu_features()).
const KernelTable& best_kernels();

// A specific table by name ("generic", "avx2", "avx512"), or nullptr if this CPU or this build lacks it.
const KernelTable* kernels_for(const char* isa);

// Names of the tables this CPU can run, best last.
int32_t available_kernel_tables(const KernelTable** out, int32_t capacity);

// Naive scalar references (no packing: PyTorch weight layouts), the ground truth for every optimized path.
namespace reference {
void pointwise(const PointwiseArgs& args, const float* w /* [n][k] */, const float* bias);
void depthwise(const DepthwiseArgs& args, const float* w /* [c][k][k] */, const float* bias);
void depthwise_rows(const DepthwiseArgs& args, const float* w, const float* bias, int32_t y_begin, int32_t y_end);
void conv(const ConvArgs& args, const float* w /* [out_c][in_c][k][k] */, const float* bias);
void max_pool(const PoolArgs& args);
void avg_pool(const PoolArgs& args);
void global_avg_pool(const float* in, int64_t pixels, int64_t in_stride, int32_t channels, float* out);
float activate(float x, Act act);
}  // namespace reference

}  // namespace ghostfast
