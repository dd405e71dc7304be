// ghostfast._core: the Python face of the C++ side (timing loop, CPU features; the engine joins later).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <vector>

#include "ghostfast/cpu_features.h"
#include "ghostfast/timing.h"

namespace nb = nanobind;
using namespace nb::literals;

void bind_engine(nb::module_& m);  // engine_bindings.cpp
void bind_kernels(nanobind::module_& m);

namespace {

using NsArray = nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>;

// Moves the samples into a heap vector owned by the returned numpy array (no copy).
NsArray to_numpy(std::vector<int64_t>&& samples) {
    auto* owned = new std::vector<int64_t>(std::move(samples));
    nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
    return NsArray(owned->data(), {owned->size()}, owner);
}

void check_counts(int64_t iters, int64_t warmup) {
    if (iters <= 0) throw nb::value_error("iters must be a positive integer");
    if (warmup < 0) throw nb::value_error("warmup must be >= 0");
}

}  // namespace

NB_MODULE(_core, m) {
    m.doc() = "ghostfast native core: the timing loop and CPU feature detection";

    m.def(
        "time_callable",
        [](nb::callable fn, int64_t iters, int64_t warmup) {
            check_counts(iters, warmup);
            // The GIL stays held: the body is Python. An exception from fn (KeyboardInterrupt included)
            // leaves the loop through nb::python_error and reaches the caller unchanged.
            return to_numpy(ghostfast::time_loop([&] { fn(); }, iters, warmup));
        },
        "fn"_a, "iters"_a, "warmup"_a = 0,
        "Call fn() warmup times, then iters times; return the nanoseconds of each timed call (int64 array).");

    m.def(
        "time_empty_loop",
        [](int64_t iters) {
            check_counts(iters, 0);
            std::vector<int64_t> samples;
            {
                nb::gil_scoped_release release;
                samples = ghostfast::time_empty_loop(iters);
            }
            return to_numpy(std::move(samples));
        },
        "iters"_a, "Per-iteration nanoseconds of the timing loop around an empty native body: its own overhead.");

    m.def(
        "steady_clock_reads",
        [](int64_t iters) {
            check_counts(iters, 0);
            return to_numpy(ghostfast::steady_clock_reads(iters));
        },
        "iters"_a, "Consecutive raw steady-clock reads in ns (for checking that the clock is monotonic).");

    m.def("cpu_features", &ghostfast::cpu_feature_names,
          "Instruction-set features of this CPU, read at run time (CPUID + OS register state).");

    bind_engine(m);
    bind_kernels(m);
}
