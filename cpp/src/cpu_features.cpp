#include "ghostfast/cpu_features.h"

#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <cstdint>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace ghostfast {
namespace {

#if defined(__x86_64__) || defined(__i386__)
// XGETBV without requiring -mxsave on this (baseline-ISA) translation unit.
uint64_t read_xcr0() {
    uint32_t eax = 0, edx = 0;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return (static_cast<uint64_t>(edx) << 32) | eax;
}

CpuFeatures detect() {
    CpuFeatures f;
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
    f.sse41 = c & (1u << 19);
    const bool osxsave = c & (1u << 27);
    const bool cpu_avx = c & (1u << 28);
    const bool cpu_fma = c & (1u << 12);
    const bool cpu_f16c = c & (1u << 29);
    // A feature counts only if the OS saves its registers on context switch (XCR0), else it faults.
    const uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    const bool os_ymm = (xcr0 & 0x6) == 0x6;
    const bool os_zmm = (xcr0 & 0xe6) == 0xe6;
    f.avx = cpu_avx && os_ymm;
    f.fma = cpu_fma && os_ymm;
    f.f16c = cpu_f16c && os_ymm;
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d)) {
        f.avx2 = (b & (1u << 5)) && os_ymm;
        f.avx512f = (b & (1u << 16)) && os_zmm;
        f.avx512dq = (b & (1u << 17)) && os_zmm;
        f.avx512bw = (b & (1u << 30)) && os_zmm;
        f.avx512vl = (b & (1u << 31)) && os_zmm;
        f.avx512_vnni = (c & (1u << 11)) && os_zmm;
    }
    if (__get_cpuid_count(7, 1, &a, &b, &c, &d)) f.avx512_bf16 = (a & (1u << 5)) && os_zmm;
    return f;
}
#elif defined(__aarch64__)
#if defined(__APPLE__)
bool sysctl_flag(const char* name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, nullptr, 0) == 0 && value != 0;
}
#endif

CpuFeatures detect() {
    CpuFeatures f;
    f.neon = true;  // Advanced SIMD is mandatory on ARM64.
#if defined(__linux__)
    // The kernel's HWCAP bits (linux/arch/arm64 uapi hwcap.h), so no header of a particular kernel is needed.
    const unsigned long hwcap = getauxval(AT_HWCAP);
    f.asimd_fp16 = hwcap & (1ul << 10);    // HWCAP_ASIMDHP
    f.asimd_dotprod = hwcap & (1ul << 20);  // HWCAP_ASIMDDP
#elif defined(__APPLE__)
    f.asimd_fp16 = sysctl_flag("hw.optional.arm.FEAT_FP16");
    f.asimd_dotprod = sysctl_flag("hw.optional.arm.FEAT_DotProd");
#endif
    return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

std::vector<std::string> cpu_feature_names() {
    const CpuFeatures& f = cpu_features();
    std::vector<std::string> out;
    const std::pair<bool, const char*> table[] = {
        {f.sse41, "sse4.1"},     {f.avx, "avx"},           {f.avx2, "avx2"},
        {f.fma, "fma"},          {f.f16c, "f16c"},         {f.avx512f, "avx512f"},
        {f.avx512bw, "avx512bw"}, {f.avx512dq, "avx512dq"}, {f.avx512vl, "avx512vl"},
        {f.avx512_vnni, "avx512_vnni"}, {f.avx512_bf16, "avx512_bf16"}, {f.neon, "neon"},
        {f.asimd_dotprod, "asimddp"}, {f.asimd_fp16, "asimdhp"},
    };
    for (const auto& [present, name] : table)
        if (present) out.emplace_back(name);
    return out;
}

}  // namespace ghostfast
