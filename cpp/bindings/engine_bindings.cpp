// ghostfast._core.Engine: build from a lowered (or loaded) program, run on numpy arrays / torch tensors.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/unique_ptr.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "ghostfast/engine.h"
#include "ghostfast/timing.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using ghostfast::Engine;
using AnyArray = nb::ndarray<nb::ro>;
using OutArray = nb::ndarray<nb::numpy, float, nb::ndim<2>>;
using NsArray = nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>;

using BufferTuple = std::tuple<int32_t, int32_t, int32_t>;
using ValueTuple = std::tuple<int32_t, int32_t, int32_t>;
using OpTuple = std::tuple<int32_t, std::vector<int32_t>, int32_t, std::vector<int32_t>, std::vector<int32_t>, std::string>;
using TensorArray = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using TensorTuple = std::tuple<std::vector<int64_t>, TensorArray>;

std::unique_ptr<Engine> make_engine(int32_t max_batch, int32_t input_value, int32_t output_value,
                                    const std::vector<BufferTuple>& buffers, const std::vector<ValueTuple>& values,
                                    const std::vector<OpTuple>& ops, const std::vector<TensorTuple>& tensors,
                                    int threads, const std::string& isa, const std::vector<std::string>& op_isas) {
    ghostfast::ProgramSpec p;
    p.max_batch = max_batch;
    p.input_value = input_value;
    p.output_value = output_value;
    for (const auto& [c, h, w] : buffers) p.buffers.push_back({c, h, w});
    for (const auto& [b, off, c] : values) p.values.push_back({b, off, c});
    for (const auto& [type, inputs, output, params, tens, name] : ops)
        p.ops.push_back({type, inputs, output, params, tens, name});
    for (const auto& [shape, data] : tensors) {
        ghostfast::TensorSpec t;
        t.shape = shape;
        t.external = data.data();  // `tensors` (and so the arrays) outlive the Engine constructor below
        t.external_size = data.size();
        p.tensors.push_back(std::move(t));
    }
    nb::gil_scoped_release release;  // packing big models takes a while; nothing here touches Python
    return std::make_unique<Engine>(std::move(p), threads, isa, op_isas);
}

// The dtype of an array-like input, as its library prints it ("float64", ">f4", "torch.float16"), or "" if none.
std::string dtype_of(nb::handle obj) {
    try {
        return nb::str(nb::getattr(obj, "dtype")).c_str();
    } catch (const std::exception&) {  // (nb::python_error included: no dtype attribute)
        return "";
    }
}

// A numpy float32 dtype in the other byte order: nanobind does not take such arrays, and the engine needs native.
bool is_swapped_float32(nb::handle obj) {
    try {
        nb::object dt = obj.attr("dtype");
        const std::string order = nb::str(dt.attr("byteorder")).c_str();
        return std::string(nb::str(dt.attr("kind")).c_str()) == "f" && nb::cast<int>(dt.attr("itemsize")) == 4 &&
               (order == ">" || order == "<");  // numpy prints native order as "=": these are the swapped ones
    } catch (const std::exception&) {
        return false;
    }
}

// Checks an input batch and returns (pointer, n). The caller keeps `x` and `aligned` alive for the duration of
// the run. An array whose data is not float-aligned (a view at an odd byte offset into a buffer) is copied into
// `aligned`: the kernels read the input through float pointers, and misaligned ones are undefined behaviour.
std::pair<const float*, int32_t> check_input(const Engine& e, nb::handle obj, AnyArray& x, std::vector<float>& aligned) {
    if (!nb::try_cast<AnyArray>(obj, x)) {
        if (is_swapped_float32(obj))
            throw nb::type_error(("input has dtype " + dtype_of(obj) + ", big-endian float32; the engine needs "
                                  "native (little-endian) float32: convert with x.astype('<f4') or "
                                  "np.ascontiguousarray(x, dtype=np.float32)").c_str());
        const std::string dt = dtype_of(obj);
        if (!dt.empty())
            throw nb::type_error(("input must be a float32 array, got dtype " + dt +
                                  " (convert with np.ascontiguousarray(x, dtype=np.float32) / .float())").c_str());
        throw nb::type_error(("input must be a numpy array or a torch tensor (float32, NCHW), got " +
                              std::string(nb::str(obj.type().attr("__name__")).c_str()))
                                 .c_str());
    }
    if (x.device_type() != nb::device::cpu::value) throw nb::value_error("input must be on the CPU");
    if (x.dtype() != nb::dtype<float>()) {
        const std::string dt = dtype_of(obj);
        throw nb::type_error(("input must have dtype float32, got " + (dt.empty() ? std::string("another dtype") : dt) +
                              " (convert with .astype(np.float32) / .float())")
                                 .c_str());
    }
    if (x.ndim() != 4)
        throw nb::value_error(("input must be 4-D NCHW, got " + std::to_string(x.ndim()) + " dimensions").c_str());
    const int64_t want[3] = {e.in_c(), e.in_h(), e.in_w()};
    for (int i = 0; i < 3; ++i)
        if (static_cast<int64_t>(x.shape(i + 1)) != want[i])
            throw nb::value_error(("input must have shape (N, " + std::to_string(want[0]) + ", " +
                                   std::to_string(want[1]) + ", " + std::to_string(want[2]) + "), got (" +
                                   std::to_string(x.shape(0)) + ", " + std::to_string(x.shape(1)) + ", " +
                                   std::to_string(x.shape(2)) + ", " + std::to_string(x.shape(3)) + ")")
                                      .c_str());
    const int64_t n = static_cast<int64_t>(x.shape(0));
    if (n < 1 || n > e.max_batch())
        throw nb::value_error(("batch must be between 1 and the compiled batch " + std::to_string(e.max_batch()) +
                               ", got " + std::to_string(n))
                                  .c_str());
    int64_t expect = 1;
    for (int i = 3; i >= 0; --i) {
        if (x.shape(i) != 1 && x.stride(i) != expect)
            throw nb::value_error("input must be C-contiguous (use np.ascontiguousarray / .contiguous())");
        expect *= static_cast<int64_t>(x.shape(i));
    }
    const auto* data = static_cast<const float*>(x.data());
    if (reinterpret_cast<uintptr_t>(data) % alignof(float) != 0) {
        aligned.resize(static_cast<size_t>(expect));
        std::memcpy(aligned.data(), data, static_cast<size_t>(expect) * sizeof(float));
        data = aligned.data();
    }
    return {data, static_cast<int32_t>(n)};
}

OutArray new_output(int32_t n, int32_t classes, float** data) {
    auto* buf = new float[static_cast<size_t>(n) * classes];
    nb::capsule owner(buf, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    *data = buf;
    return OutArray(buf, {static_cast<size_t>(n), static_cast<size_t>(classes)}, owner);
}

}  // namespace

void bind_engine(nb::module_& m) {
    m.attr("MAX_THREADS") = ghostfast::kMaxThreads;  // the upper bound of Engine's threads (thread_pool.h)
    nb::class_<Engine>(m, "Engine", "A compiled model: run(x) -> logits. Build through ghostfast.compile / load.")
        .def(nb::new_(&make_engine), "max_batch"_a, "input_value"_a, "output_value"_a, "buffers"_a, "values"_a,
             "ops"_a, "tensors"_a, "threads"_a = 1, "isa"_a = "", "op_isas"_a = std::vector<std::string>{})
        .def(
            "run",
            [](Engine& e, nb::handle obj) {
                AnyArray x;
                std::vector<float> aligned;
                auto [ptr, n] = check_input(e, obj, x, aligned);
                float* out = nullptr;
                OutArray result = new_output(n, e.classes(), &out);
                {
                    nb::gil_scoped_release release;
                    e.run(ptr, n, out);
                }
                return result;
            },
            "x"_a, "Logits (N, classes) for a float32 NCHW batch; the GIL is released while it runs.")
        .def(
            "time",
            [](Engine& e, nb::handle obj, int64_t iters, int64_t warmup) {
                if (iters <= 0) throw nb::value_error("iters must be a positive integer");
                if (warmup < 0) throw nb::value_error("warmup must be >= 0");
                AnyArray x;
                std::vector<float> aligned;
                auto [ptr, n] = check_input(e, obj, x, aligned);
                std::vector<float> out(static_cast<size_t>(n) * e.classes());
                std::vector<int64_t> samples;
                {
                    nb::gil_scoped_release release;
                    samples = ghostfast::time_loop([&] { e.run(ptr, n, out.data()); }, iters, warmup);
                }
                auto* owned = new std::vector<int64_t>(std::move(samples));
                nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
                return NsArray(owned->data(), {owned->size()}, owner);
            },
            "x"_a, "iters"_a, "warmup"_a = 0,
            "Per-iteration ns of iters runs after warmup runs, all inside the C++ loop without the GIL.")
        .def(
            "profile_ops",
            [](Engine& e, nb::handle obj, int32_t iters) {
                if (iters <= 0) throw nb::value_error("iters must be a positive integer");
                AnyArray x;
                std::vector<float> aligned;
                auto [ptr, n] = check_input(e, obj, x, aligned);
                std::vector<ghostfast::OpTiming> t;
                {
                    nb::gil_scoped_release release;
                    t = e.profile_ops(ptr, n, iters);
                }
                std::vector<std::tuple<std::string, std::string, double, std::string>> out;
                for (const auto& r : t) out.emplace_back(r.name, r.type, r.mean_ns, r.isa);
                return out;
            },
            "x"_a, "iters"_a, "(name, type, mean ns, kernel table) per op, averaged over iters runs.")
        .def_prop_ro("max_batch", &Engine::max_batch)
        .def_prop_ro("input_shape", [](const Engine& e) { return std::make_tuple(e.in_c(), e.in_h(), e.in_w()); })
        .def_prop_ro("classes", &Engine::classes)
        .def_prop_ro("threads", &Engine::threads)
        .def_prop_ro("isa", [](const Engine& e) { return std::string(e.isa()); })
        .def_prop_ro(
            "op_isas",
            [](const Engine& e) {
                std::vector<std::string> out;
                for (size_t i = 0; i < e.program().ops.size(); ++i) out.emplace_back(e.op_isa(i));
                return out;
            },
            "The kernel table that runs each op.")
        .def_prop_ro("arena_bytes", &Engine::arena_bytes)
        .def_prop_ro("packed_weight_bytes", &Engine::weight_bytes)
        .def_prop_ro("parallel_regions", &Engine::parallel_regions)
        .def_prop_ro("num_ops", [](const Engine& e) { return e.program().ops.size(); });
}
