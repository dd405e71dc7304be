// Picks the kernel table at run time from cpu_features(). Baseline-ISA translation unit: it only takes the
// addresses of the ISA units' tables, never calls into them, so nothing here can execute an instruction the CPU
// lacks.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "ghostfast/cpu_features.h"
#include "ghostfast/kernels.h"

namespace ghostfast {
namespace generic {
extern const KernelTable kTable;
}
#if defined(GHOSTFAST_X86)
namespace avx2 {
extern const KernelTable kTable;
}
namespace avx512 {
extern const KernelTable kTable;
}
#endif
#if defined(GHOSTFAST_AARCH64)
namespace neon {
extern const KernelTable kTable;
}
#endif

namespace {

bool supported(const KernelTable& t) {
    const CpuFeatures& f = cpu_features();
    if (std::strcmp(t.isa, "avx2") == 0) return f.avx2 && f.fma;
    if (std::strcmp(t.isa, "avx512") == 0) return f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
    if (std::strcmp(t.isa, "neon") == 0) return f.neon;
    return true;
}

// Every table this build has, worst first.
const KernelTable* const kAllTables[] = {
    &generic::kTable,
#if defined(GHOSTFAST_X86)
    &avx2::kTable,
    &avx512::kTable,
#endif
#if defined(GHOSTFAST_AARCH64)
    &neon::kTable,
#endif
};
constexpr int32_t kTableCount = static_cast<int32_t>(sizeof(kAllTables) / sizeof(kAllTables[0]));

const KernelTable& choose() {
    const KernelTable* best = &generic::kTable;
    for (const KernelTable* t : kAllTables)
        if (supported(*t)) best = t;
    // GHOSTFAST_ISA lowers the choice (for testing and for comparing ISAs); it can never raise it.
    const char* forced = std::getenv("GHOSTFAST_ISA");
    if (forced && *forced) {
        const KernelTable* t = kernels_for(forced);
        if (t) return *t;
        std::fprintf(stderr, "ghostfast: GHOSTFAST_ISA=%s is not available on this CPU/build; using %s\n", forced,
                     best->isa);
    }
    return *best;
}

}  // namespace

const KernelTable& best_kernels() {
    static const KernelTable& table = choose();
    return table;
}

const KernelTable* kernels_for(const char* isa) {
    if (!isa) return nullptr;
    for (const KernelTable* t : kAllTables)
        if (std::strcmp(t->isa, isa) == 0) return supported(*t) ? t : nullptr;
    return nullptr;
}

int32_t available_kernel_tables(const KernelTable** out, int32_t capacity) {
    int32_t n = 0;
    for (const KernelTable* t : kAllTables) {
        if (!supported(*t)) continue;
        if (out && n < capacity) out[n] = t;
        ++n;
    }
    return n;  // the number available; only the first `capacity` are written
}

}  // namespace ghostfast
