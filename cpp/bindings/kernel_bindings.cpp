// ghostfast._core.kernels: the kernel tables exposed to Python for tests and benchmarks. Every op runs one
// named table ("reference" for the scalar ground truth) on numpy float32 arrays.
//
// Inputs and outputs may be channel-slice views of wider buffers (e.g. big[:, :, 5:5 + c]): any view whose last
// axis is contiguous and whose pixels are evenly spaced is passed to the kernel with its pixel stride, and an
// `out=` view is written in place (its other channels stay untouched). `*_chunk` arguments split the call into
// several [begin, end) sub-ranges, as the executor's threads do. `repeat=n > 0` times n calls (after one warm-up)
// and returns the mean nanoseconds per call instead of the result. Bad shapes raise ValueError.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "ghostfast/kernels.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using ghostfast::Act;
using ghostfast::KernelTable;

using CArr = nb::ndarray<const float, nb::device::cpu>;  // any rank, any strides (checked below)
using MArr = nb::ndarray<float, nb::device::cpu>;        // writable
using CContig = nb::ndarray<const float, nb::device::cpu, nb::c_contig>;
using NpArr = nb::ndarray<nb::numpy, float>;

// A table by name, or nullptr for "reference".
const KernelTable* table_for(const std::string& isa) {
    if (isa == "reference") return nullptr;
    const KernelTable* t = ghostfast::kernels_for(isa.c_str());
    if (!t) throw nb::value_error(("kernel table '" + isa + "' is not available on this CPU/build").c_str());
    return t;
}

Act to_act(int act) {
    if (act < 0 || act >= ghostfast::kActCount) throw nb::value_error("act must be in [0, 7)");
    return static_cast<Act>(act);
}

void require(bool ok, const std::string& what) {
    if (!ok) throw nb::value_error(what.c_str());
}

// A freshly allocated float32 numpy array owning its buffer.
struct NewArray {
    float* data = nullptr;
    NpArr array;
};
NewArray new_array(size_t ndim, const size_t* shape) {
    size_t n = 1;
    for (size_t i = 0; i < ndim; ++i) n *= shape[i];
    float* data = new float[n > 0 ? n : 1]();
    nb::capsule owner(data, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    return {data, NpArr(data, ndim, shape, owner)};
}
NewArray new_array(std::initializer_list<size_t> shape) { return new_array(shape.size(), shape.begin()); }

// 64-byte aligned scratch for packed weights (the engine's contract for packed buffers).
struct Aligned {
    float* p = nullptr;
    explicit Aligned(size_t floats) {
        const size_t bytes = ((floats * sizeof(float) + 63) / 64) * 64;
        p = static_cast<float*>(std::aligned_alloc(64, bytes > 0 ? bytes : 64));
        if (!p) throw std::bad_alloc();
    }
    ~Aligned() { std::free(p); }
    Aligned(const Aligned&) = delete;
    Aligned& operator=(const Aligned&) = delete;
};

// A [rows, cols] view with a contiguous last axis and a uniform row stride (in floats).
struct View2 {
    const float* data;
    int64_t rows, cols, stride;
};
template <class Arr>
View2 view2(const Arr& a, const char* name) {
    require(a.ndim() == 2, std::string(name) + " must be 2-D");
    const int64_t rows = static_cast<int64_t>(a.shape(0)), cols = static_cast<int64_t>(a.shape(1));
    require(rows >= 1 && cols >= 1, std::string(name) + " must not be empty");
    require(cols == 1 || a.stride(1) == 1, std::string(name) + ": the last axis must be contiguous");
    const int64_t stride = rows > 1 ? a.stride(0) : cols;
    require(stride >= cols, std::string(name) + ": rows must not overlap (row stride >= columns)");
    return {a.data(), rows, cols, stride};
}

// An [h, w, c] plane with a contiguous channel axis and one pixel stride (in floats) for every pixel.
struct Plane {
    const float* data;
    int32_t h, w, c;
    int64_t stride;
};
template <class Arr>
Plane plane(const Arr& a, const char* name) {
    require(a.ndim() == 3, std::string(name) + " must be 3-D [h, w, c]");
    const int64_t h = static_cast<int64_t>(a.shape(0)), w = static_cast<int64_t>(a.shape(1)),
                  c = static_cast<int64_t>(a.shape(2));
    require(h >= 1 && w >= 1 && c >= 1, std::string(name) + " must not be empty");
    require(h < (1 << 20) && w < (1 << 20) && c < (1 << 24), std::string(name) + " is too large");
    require(c == 1 || a.stride(2) == 1, std::string(name) + ": the channel axis must be contiguous");
    int64_t stride = c;
    if (w > 1)
        stride = a.stride(1);
    else if (h > 1)
        stride = a.stride(0);
    require(stride >= c, std::string(name) + ": pixels must not overlap (pixel stride >= channels)");
    require(h == 1 || w == 1 || a.stride(0) == w * stride,
            std::string(name) + ": rows must be evenly spaced pixels (row stride == width * pixel stride)");
    return {a.data(), static_cast<int32_t>(h), static_cast<int32_t>(w), static_cast<int32_t>(c), stride};
}

// Runs body() once, or (repeat > 0) once to warm up and then repeat times, returning ns per call.
template <class Body>
nb::object run(int64_t repeat, Body&& body, nb::object result) {
    require(repeat >= 0, "repeat must be >= 0");
    double ns = 0.0;
    {
        nb::gil_scoped_release release;
        body();
        if (repeat > 0) {
            const auto t0 = std::chrono::steady_clock::now();
            for (int64_t i = 0; i < repeat; ++i) body();
            const auto t1 = std::chrono::steady_clock::now();
            ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / static_cast<double>(repeat);
        }
    }
    if (repeat > 0) return nb::float_(ns);
    return result;
}

// Calls fn(begin, end) over [0, total) in chunks of `chunk` (0: one call).
template <class Fn>
void chunked(int64_t total, int64_t chunk, Fn&& fn) {
    if (chunk <= 0 || chunk >= total) return fn(int64_t{0}, total);
    for (int64_t b = 0; b < total; b += chunk) fn(b, b + chunk < total ? b + chunk : total);
}

const float* optional_vector(const std::optional<CContig>& v, int64_t n, const char* name) {
    if (!v) return nullptr;
    require(v->ndim() == 1 && static_cast<int64_t>(v->shape(0)) == n,
            std::string(name) + " must have shape [" + std::to_string(n) + "]");
    return v->data();
}

// Output plane: the caller's view (checked against the expected shape) or a new array.
struct OutPlane {
    float* data;
    int64_t stride;
    nb::object result;
};
OutPlane out_plane(const std::optional<MArr>& out, int32_t h, int32_t w, int32_t c) {
    if (out) {
        const Plane p = plane(*out, "out");
        require(p.h == h && p.w == w && p.c == c, "out must have shape [" + std::to_string(h) + ", " +
                                                      std::to_string(w) + ", " + std::to_string(c) + "]");
        return {const_cast<float*>(p.data), p.stride, nb::none()};
    }
    NewArray a = new_array({static_cast<size_t>(h), static_cast<size_t>(w), static_cast<size_t>(c)});
    return {a.data, c, nb::cast(a.array)};
}

struct OutRows {
    float* data;
    int64_t stride;
    nb::object result;
};
OutRows out_rows(const std::optional<MArr>& out, int64_t rows, int64_t cols) {
    if (out) {
        const View2 v = view2(*out, "out");
        require(v.rows == rows && v.cols == cols,
                "out must have shape [" + std::to_string(rows) + ", " + std::to_string(cols) + "]");
        return {const_cast<float*>(v.data), v.stride, nb::none()};
    }
    NewArray a = new_array({static_cast<size_t>(rows), static_cast<size_t>(cols)});
    return {a.data, cols, nb::cast(a.array)};
}

int32_t spatial_out(int32_t in, int32_t k, int32_t s, int32_t pad, const char* what) {
    require(k >= 1 && k <= 64, std::string(what) + ": kernel must be in [1, 64]");
    require(s >= 1, std::string(what) + ": stride must be >= 1");
    require(pad >= 0 && pad <= 4096, std::string(what) + ": pad must be in [0, 4096]");
    require(s <= 4096, std::string(what) + ": stride must be <= 4096");
    require(in + 2 * pad >= k, std::string(what) + ": the padded input is smaller than the kernel");
    return (in + 2 * pad - k) / s + 1;
}

// ---- ops ------------------------------------------------------------------------------------------------------

nb::object pointwise(const std::string& isa, const CArr& a, const CContig& w, const std::optional<CContig>& bias,
                     const std::optional<CArr>& residual, int act, const std::optional<MArr>& out, int64_t m_chunk,
                     int64_t n_chunk, int64_t repeat, const std::optional<MArr>& raw, int64_t k_stride) {
    const KernelTable* t = table_for(isa);
    const View2 av = view2(a, "a");
    require(k_stride >= 1 && k_stride < (1 << 24), "k_stride must be in [1, 2^24)");
    require(w.ndim() == 2 && w.shape(1) >= 1, "w must have shape [n, k]");
    const int64_t n = static_cast<int64_t>(w.shape(0)), k = static_cast<int64_t>(w.shape(1)), m = av.rows;
    if (k_stride == 1)
        require(k == av.cols, "w must have shape [n, k] with k = a.shape[1]");
    else
        require((k - 1) * k_stride < av.cols, "a must have more than (k - 1) * k_stride columns (k = w.shape[1])");
    require(n >= 1 && n < (1 << 24) && k < (1 << 24), "n and k must be in [1, 2^24)");
    ghostfast::PointwiseArgs args;
    args.a = av.data;
    args.a_stride = av.stride;
    args.a_kstride = k_stride;
    args.m = m;
    args.k = static_cast<int32_t>(k);
    args.n = static_cast<int32_t>(n);
    args.act = to_act(act);
    const float* b = optional_vector(bias, n, "bias");
    if (residual) {
        const View2 rv = view2(*residual, "residual");
        require(rv.rows == m && rv.cols == n, "residual must have shape [m, n]");
        args.residual = rv.data;
        args.r_stride = rv.stride;
    }
    OutRows o = out_rows(out, m, n);
    args.c = o.data;
    args.c_stride = o.stride;
    if (raw) {
        const View2 rv = view2(*raw, "raw");
        require(rv.rows == m && rv.cols == n, "raw must have shape [m, n]");
        args.raw = const_cast<float*>(rv.data);
        args.raw_stride = rv.stride;
    }
    require(m_chunk >= 0 && n_chunk >= 0, "chunks must be >= 0");
    if (!t) return run(repeat, [&] { ghostfast::reference::pointwise(args, w.data(), b); }, o.result);

    Aligned packed(t->pointwise_packed_size(args.k, args.n));
    t->pack_pointwise(w.data(), b, args.k, args.n, packed.p);
    args.packed = packed.p;
    const int64_t nr = t->pointwise_nr;
    const int64_t panels = (n + nr - 1) / nr;
    return run(
        repeat,
        [&] {
            chunked(m, m_chunk, [&](int64_t m0, int64_t m1) {
                chunked(panels, n_chunk, [&](int64_t p0, int64_t p1) {
                    t->pointwise(args, m0, m1, static_cast<int32_t>(p0 * nr),
                                 static_cast<int32_t>(p1 * nr < n ? p1 * nr : n));
                });
            });
        },
        o.result);
}

nb::object depthwise(const std::string& isa, const CArr& x, const CContig& w, const std::optional<CContig>& bias,
                     int stride, int pad, int act, const std::optional<MArr>& out, int64_t row_chunk,
                     int64_t repeat, const std::optional<CArr>& residual) {
    const KernelTable* t = table_for(isa);
    const Plane in = plane(x, "x");
    require(w.ndim() == 3 && static_cast<int32_t>(w.shape(0)) == in.c && w.shape(1) == w.shape(2),
            "w must have shape [c, k, k] with c = x.shape[2]");
    const int32_t k = static_cast<int32_t>(w.shape(1));
    ghostfast::DepthwiseArgs args;
    args.in = in.data;
    args.in_h = in.h;
    args.in_w = in.w;
    args.in_stride = in.stride;
    args.channels = in.c;
    args.kernel = k;
    args.stride = stride;
    args.pad = pad;
    args.out_h = spatial_out(in.h, k, stride, pad, "depthwise");
    args.out_w = spatial_out(in.w, k, stride, pad, "depthwise");
    args.act = to_act(act);
    const float* b = optional_vector(bias, in.c, "bias");
    OutPlane o = out_plane(out, args.out_h, args.out_w, in.c);
    args.out = o.data;
    args.out_stride = o.stride;
    if (residual) {
        const Plane r = plane(*residual, "residual");
        require(r.h == args.out_h && r.w == args.out_w && r.c == in.c,
                "residual must have the output's shape [" + std::to_string(args.out_h) + ", " +
                    std::to_string(args.out_w) + ", " + std::to_string(in.c) + "]");
        args.residual = r.data;
        args.r_stride = r.stride;
    }
    require(row_chunk >= 0, "row_chunk must be >= 0");
    if (!t) return run(repeat, [&] { ghostfast::reference::depthwise(args, w.data(), b); }, o.result);
    Aligned packed(t->depthwise_packed_size(in.c, k));
    t->pack_depthwise(w.data(), b, in.c, k, packed.p);
    args.packed = packed.p;
    return run(
        repeat,
        [&] {
            chunked(args.out_h, row_chunk, [&](int64_t y0, int64_t y1) {
                t->depthwise(args, static_cast<int32_t>(y0), static_cast<int32_t>(y1));
            });
        },
        o.result);
}

// Output rows [y_begin, y_end) of a depthwise whose input and output planes are ring buffers: ring_in holds
// input row r at r % ring_in.shape[0] (the logical input is in_h rows), ring_out gets output row y at
// y % ring_out.shape[0]. The caller fills ring_in with the rows those outputs read.
void depthwise_ring(const std::string& isa, const CArr& ring_in, int in_h, const CContig& w,
                    const std::optional<CContig>& bias, int stride, int pad, int act, const MArr& ring_out,
                    int y_begin, int y_end) {
    const KernelTable* t = table_for(isa);
    const Plane in = plane(ring_in, "ring_in");
    const Plane out = plane(ring_out, "ring_out");
    require(w.ndim() == 3 && static_cast<int32_t>(w.shape(0)) == in.c && w.shape(1) == w.shape(2),
            "w must have shape [c, k, k] with c = ring_in.shape[2]");
    require(in_h >= 1 && in_h < (1 << 20), "in_h must be in [1, 2^20)");
    const int32_t k = static_cast<int32_t>(w.shape(1));
    ghostfast::DepthwiseArgs args;
    args.in = in.data, args.in_h = in_h, args.in_w = in.w, args.in_stride = in.stride, args.in_ring = in.h;
    args.channels = in.c, args.kernel = k, args.stride = stride, args.pad = pad, args.act = to_act(act);
    args.out_h = spatial_out(in_h, k, stride, pad, "depthwise");
    args.out_w = spatial_out(in.w, k, stride, pad, "depthwise");
    require(out.w == args.out_w && out.c == in.c, "ring_out must have shape [rows, out_w, c]");
    require(0 <= y_begin && y_begin <= y_end && y_end <= args.out_h, "need 0 <= y_begin <= y_end <= out_h");
    // Every input row the range reads must be in the ring, and every output row of the range a distinct slot.
    const int32_t lo = std::max(0, y_begin * stride - pad), hi = std::min(in_h, (y_end - 1) * stride - pad + k);
    require(y_end == y_begin || (hi - lo <= in.h && y_end - y_begin <= out.h), "the rings are too small for the range");
    args.out = const_cast<float*>(out.data), args.out_stride = out.stride, args.out_ring = out.h;
    const float* b = optional_vector(bias, in.c, "bias");
    nb::gil_scoped_release release;
    if (!t) return ghostfast::reference::depthwise_rows(args, w.data(), b, y_begin, y_end);
    Aligned packed(t->depthwise_packed_size(in.c, k));
    t->pack_depthwise(w.data(), b, in.c, k, packed.p);
    args.packed = packed.p;
    t->depthwise(args, y_begin, y_end);
}

nb::object conv(const std::string& isa, const CArr& x, const CContig& w, const std::optional<CContig>& bias,
                int stride, int pad, int act, const std::optional<MArr>& out, int64_t row_chunk, int64_t repeat,
                bool planar) {
    const KernelTable* t = table_for(isa);
    Plane in{};
    int64_t c_stride = 1;
    if (planar) {  // x[c, h, w], C-contiguous: the engine's NCHW input
        require(x.ndim() == 3 && x.shape(0) >= 1 && x.shape(1) >= 1 && x.shape(2) >= 1,
                "planar x must be 3-D [c, h, w] and not empty");
        const int64_t c = x.shape(0), h = x.shape(1), wd = x.shape(2);
        require(h < (1 << 20) && wd < (1 << 20) && c < (1 << 24), "x is too large");
        require(x.stride(2) == 1 && x.stride(1) == wd && x.stride(0) == h * wd, "planar x must be C-contiguous");
        in = {x.data(), static_cast<int32_t>(h), static_cast<int32_t>(wd), static_cast<int32_t>(c), 1};
        c_stride = h * wd;
    } else {
        in = plane(x, "x");
    }
    require(w.ndim() == 4 && static_cast<int32_t>(w.shape(1)) == in.c && w.shape(2) == w.shape(3) && w.shape(0) >= 1,
            "w must have shape [out_c, in_c, k, k] with in_c = x.shape[2]");
    const int32_t k = static_cast<int32_t>(w.shape(2));
    const int32_t out_c = static_cast<int32_t>(w.shape(0));
    ghostfast::ConvArgs args;
    args.in = in.data;
    args.in_h = in.h;
    args.in_w = in.w;
    args.in_c = in.c;
    args.in_stride = in.stride;
    args.in_c_stride = c_stride;
    args.out_c = out_c;
    args.kernel = k;
    args.stride = stride;
    args.pad = pad;
    args.out_h = spatial_out(in.h, k, stride, pad, "conv");
    args.out_w = spatial_out(in.w, k, stride, pad, "conv");
    args.act = to_act(act);
    const float* b = optional_vector(bias, out_c, "bias");
    OutPlane o = out_plane(out, args.out_h, args.out_w, out_c);
    args.out = o.data;
    args.out_stride = o.stride;
    require(row_chunk >= 0, "row_chunk must be >= 0");
    if (!t) return run(repeat, [&] { ghostfast::reference::conv(args, w.data(), b); }, o.result);
    Aligned packed(t->conv_packed_size(in.c, out_c, k));
    t->pack_conv(w.data(), b, in.c, out_c, k, packed.p);
    args.packed = packed.p;
    return run(
        repeat,
        [&] {
            chunked(args.out_h, row_chunk, [&](int64_t y0, int64_t y1) {
                t->conv(args, static_cast<int32_t>(y0), static_cast<int32_t>(y1));
            });
        },
        o.result);
}

nb::object pool(bool is_max, const std::string& isa, const CArr& x, int kernel, int stride, int pad,
                const std::optional<MArr>& out, int64_t row_chunk, int64_t repeat) {
    const KernelTable* t = table_for(isa);
    const Plane in = plane(x, "x");
    ghostfast::PoolArgs args;
    args.in = in.data;
    args.in_h = in.h;
    args.in_w = in.w;
    args.in_stride = in.stride;
    args.channels = in.c;
    args.kernel = kernel;
    args.stride = stride;
    args.pad = pad;
    args.out_h = spatial_out(in.h, kernel, stride, pad, "pool");
    args.out_w = spatial_out(in.w, kernel, stride, pad, "pool");
    require(2 * pad <= kernel, "pool: pad must be <= kernel / 2 (as in PyTorch)");
    OutPlane o = out_plane(out, args.out_h, args.out_w, in.c);
    args.out = o.data;
    args.out_stride = o.stride;
    require(row_chunk >= 0, "row_chunk must be >= 0");
    if (!t)
        return run(
            repeat, [&] { is_max ? ghostfast::reference::max_pool(args) : ghostfast::reference::avg_pool(args); },
            o.result);
    auto fn = is_max ? t->max_pool : t->avg_pool;
    return run(
        repeat,
        [&] {
            chunked(args.out_h, row_chunk,
                    [&](int64_t y0, int64_t y1) { fn(args, static_cast<int32_t>(y0), static_cast<int32_t>(y1)); });
        },
        o.result);
}

nb::object global_avg_pool(const std::string& isa, const CArr& x, int64_t repeat) {
    const KernelTable* t = table_for(isa);
    const View2 v = view2(x, "x");
    require(v.cols < (1 << 24), "too many channels");
    NewArray o = new_array({static_cast<size_t>(v.cols)});
    auto fn = t ? t->global_avg_pool : &ghostfast::reference::global_avg_pool;
    return run(repeat, [&] { fn(v.data, v.rows, v.stride, static_cast<int32_t>(v.cols), o.data); }, nb::cast(o.array));
}

nb::object add(const std::string& isa, const CArr& a, const CArr& b, int act, const std::optional<MArr>& out,
               int64_t p_chunk, int64_t repeat) {
    const KernelTable* t = table_for(isa);
    const View2 av = view2(a, "a"), bv = view2(b, "b");
    require(av.rows == bv.rows && av.cols == bv.cols, "a and b must have the same shape");
    require(av.cols < (1 << 24), "too many channels");
    const Act ac = to_act(act);
    OutRows o = out_rows(out, av.rows, av.cols);
    require(p_chunk >= 0, "p_chunk must be >= 0");
    const int32_t c = static_cast<int32_t>(av.cols);
    if (!t)
        return run(
            repeat,
            [&] {
                for (int64_t p = 0; p < av.rows; ++p)
                    for (int32_t i = 0; i < c; ++i)
                        o.data[p * o.stride + i] =
                            ghostfast::reference::activate(av.data[p * av.stride + i] + bv.data[p * bv.stride + i], ac);
            },
            o.result);
    return run(
        repeat,
        [&] {
            chunked(av.rows, p_chunk, [&](int64_t p0, int64_t p1) {
                t->add(av.data, av.stride, bv.data, bv.stride, o.data, o.stride, c, ac, p0, p1);
            });
        },
        o.result);
}

nb::object scale_channels(const std::string& isa, const MArr& x, const CContig& s, int64_t p_chunk, int64_t repeat) {
    const KernelTable* t = table_for(isa);
    const View2 v = view2(x, "x");
    require(v.cols < (1 << 24), "too many channels");
    require(s.ndim() == 1 && static_cast<int64_t>(s.shape(0)) == v.cols, "s must have shape [c] with c = x.shape[1]");
    require(p_chunk >= 0, "p_chunk must be >= 0");
    float* data = const_cast<float*>(v.data);
    const int32_t c = static_cast<int32_t>(v.cols);
    if (!t)
        return run(
            repeat,
            [&] {
                for (int64_t p = 0; p < v.rows; ++p)
                    for (int32_t i = 0; i < c; ++i) data[p * v.stride + i] *= s.data()[i];
            },
            nb::none());
    return run(
        repeat,
        [&] {
            chunked(v.rows, p_chunk,
                    [&](int64_t p0, int64_t p1) { t->scale_channels(data, v.stride, s.data(), c, p0, p1); });
        },
        nb::none());
}

nb::object activate(const std::string& isa, const CContig& x, int act, int64_t repeat) {
    const KernelTable* t = table_for(isa);
    const Act ac = to_act(act);
    const size_t count = x.size();
    std::vector<size_t> shape(x.ndim());
    for (size_t i = 0; i < x.ndim(); ++i) shape[i] = x.shape(i);
    NewArray o = new_array(shape.size(), shape.data());
    std::memcpy(o.data, x.data(), count * sizeof(float));
    if (!t)
        return run(
            repeat,
            [&] {
                for (size_t i = 0; i < count; ++i) o.data[i] = ghostfast::reference::activate(o.data[i], ac);
            },
            nb::cast(o.array));
    return run(repeat, [&] { t->activate(o.data, static_cast<int64_t>(count), ac); }, nb::cast(o.array));
}

}  // namespace

void bind_kernels(nb::module_& m) {
    nb::module_ k = m.def_submodule("kernels", "The kernel tables, one op at a time (tests and benchmarks)");

    k.def(
        "available",
        [] {
            const KernelTable* tables[8];
            const int32_t n = ghostfast::available_kernel_tables(tables, 8);
            std::vector<std::string> names;
            for (int32_t i = 0; i < n && i < 8; ++i) names.emplace_back(tables[i]->isa);
            return names;
        },
        "Names of the kernel tables this CPU can run, best last.");
    k.def(
        "best", [] { return std::string(ghostfast::best_kernels().isa); },
        "The table the engine uses (best supported, or lower if GHOSTFAST_ISA says so).");
    k.def(
        "table_info",
        [](const std::string& isa) {
            const KernelTable* t = table_for(isa);
            if (!t) throw nb::value_error("the reference has no table");
            nb::dict d;
            d["isa"] = t->isa;
            d["vector_floats"] = t->vector_floats;
            d["pointwise_nr"] = t->pointwise_nr;
            return d;
        },
        "isa"_a, "vector_floats and pointwise_nr of a table.");
    k.def(
        "packed_sizes",
        [](const std::string& isa, int k_, int n, int channels, int kernel, int in_c, int out_c) {
            const KernelTable* t = table_for(isa);
            if (!t) throw nb::value_error("the reference has no table");
            require(k_ >= 0 && n >= 0 && channels >= 0 && kernel >= 0 && in_c >= 0 && out_c >= 0, "sizes must be >= 0");
            nb::dict d;
            d["pointwise"] = t->pointwise_packed_size(k_, n);
            d["depthwise"] = t->depthwise_packed_size(channels, kernel);
            d["conv"] = t->conv_packed_size(in_c, out_c, kernel);
            return d;
        },
        "isa"_a, "k"_a, "n"_a, "channels"_a, "kernel"_a, "in_c"_a, "out_c"_a, "Packed weight sizes in floats.");

    k.def("pointwise", &pointwise, "isa"_a, "a"_a, "w"_a, "bias"_a = nb::none(), "residual"_a = nb::none(),
          "act"_a = 0, nb::arg("out").noconvert() = nb::none(), "m_chunk"_a = 0, "n_chunk"_a = 0, "repeat"_a = 0,
          nb::arg("raw").noconvert() = nb::none(), "k_stride"_a = 1,
          "c[m, n] = act(a @ w.T + bias + residual). a/residual/out may be row-strided views; n_chunk counts "
          "column panels of the table's pointwise_nr. raw (optional, written): a @ w.T + bias, before the "
          "residual and the activation. k_stride: a's columns 0, s, 2s, ... are the k inputs (a folded channel "
          "shuffle).");
    k.def("depthwise", &depthwise, "isa"_a, "x"_a, "w"_a, "bias"_a = nb::none(), "stride"_a = 1, "pad"_a = 1,
          "act"_a = 0, nb::arg("out").noconvert() = nb::none(), "row_chunk"_a = 0, "repeat"_a = 0,
          "residual"_a = nb::none(),
          "Depthwise conv of x[h, w, c] with w[c, k, k]; residual (optional, the output's shape) is added before "
          "the activation.");
    k.def("depthwise_ring", &depthwise_ring, "isa"_a, "ring_in"_a, "in_h"_a, "w"_a, "bias"_a, "stride"_a, "pad"_a,
          "act"_a, nb::arg("ring_out").noconvert(), "y_begin"_a, "y_end"_a,
          "Output rows [y_begin, y_end) of a depthwise over ring buffers (row r at r % rows), in place in ring_out.");
    k.def("conv", &conv, "isa"_a, "x"_a, "w"_a, "bias"_a = nb::none(), "stride"_a = 1, "pad"_a = 1, "act"_a = 0,
          nb::arg("out").noconvert() = nb::none(), "row_chunk"_a = 0, "repeat"_a = 0, "planar"_a = false,
          "Dense conv of x[h, w, in_c] (planar: x[in_c, h, w]) with w[out_c, in_c, k, k].");
    k.def(
        "max_pool",
        [](const std::string& isa, const CArr& x, int kernel, int stride, int pad, const std::optional<MArr>& out,
           int64_t row_chunk, int64_t repeat) { return pool(true, isa, x, kernel, stride, pad, out, row_chunk, repeat); },
        "isa"_a, "x"_a, "kernel"_a, "stride"_a, "pad"_a, nb::arg("out").noconvert() = nb::none(), "row_chunk"_a = 0,
        "repeat"_a = 0, "Max pool of x[h, w, c] (padding never wins).");
    k.def(
        "avg_pool",
        [](const std::string& isa, const CArr& x, int kernel, int stride, int pad, const std::optional<MArr>& out,
           int64_t row_chunk, int64_t repeat) { return pool(false, isa, x, kernel, stride, pad, out, row_chunk, repeat); },
        "isa"_a, "x"_a, "kernel"_a, "stride"_a, "pad"_a, nb::arg("out").noconvert() = nb::none(), "row_chunk"_a = 0,
        "repeat"_a = 0, "Average pool of x[h, w, c], count_include_pad=True.");
    k.def("global_avg_pool", &global_avg_pool, "isa"_a, "x"_a, "repeat"_a = 0,
          "Mean over the pixels of x[pixels, c] (a row-strided view is fine).");
    k.def("add", &add, "isa"_a, "a"_a, "b"_a, "act"_a = 0, nb::arg("out").noconvert() = nb::none(), "p_chunk"_a = 0,
          "repeat"_a = 0, "act(a + b) over [pixels, c] views.");
    k.def("scale_channels", &scale_channels, "isa"_a, nb::arg("x").noconvert(), "s"_a, "p_chunk"_a = 0,
          "repeat"_a = 0, "x[p, c] *= s[c] in place (x may be a row-strided view).");
    k.def("activate", &activate, "isa"_a, "x"_a, "act"_a, "repeat"_a = 0,
          "act(x) element-wise, returned as a new array of x's shape (x is not modified).");
}
