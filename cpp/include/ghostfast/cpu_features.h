// The CPU's instruction-set features, read at run time (never assumed at build time).
#pragma once

#include <string>
#include <vector>

namespace ghostfast {

struct CpuFeatures {
    bool sse41 = false;
    bool avx = false;
    bool avx2 = false;
    bool fma = false;
    bool f16c = false;
    bool avx512f = false;
    bool avx512bw = false;
    bool avx512dq = false;
    bool avx512vl = false;
    bool avx512_vnni = false;
    bool avx512_bf16 = false;
    bool neon = false;
    // ARMv8.2 extensions a later AArch64 table would use: int8 dot product (sdot/udot) and fp16 arithmetic.
    // Read and reported now; no table depends on them yet.
    bool asimd_dotprod = false;
    bool asimd_fp16 = false;
};

// Read once (CPUID plus the OS's XSAVE state on x86; the kernel's HWCAP bits or sysctl on ARM64) and cached.
const CpuFeatures& cpu_features();

// The names of the features that are present, e.g. {"avx2", "fma", "avx512f", ...}.
std::vector<std::string> cpu_feature_names();

}  // namespace ghostfast
