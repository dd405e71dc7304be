// Which kernel table runs each op. A wide-vector table can hand an op to a narrower one: GhostNet's half-width
// channel counts (8, 20, 24, 36, ...) fill 16-float vectors badly, and on a core that splits 512-bit operations
// into two 256-bit halves a half-empty 16-float FMA costs as much as two full 8-float ones. Whether the narrow
// table wins depends on the core, so the engine times both on the op's own shapes when it is built.
#pragma once

#include "ghostfast/engine.h"
#include "ghostfast/kernels.h"

namespace ghostfast {

// The table with half the vector width that `main` may hand ops to (AVX-512 -> AVX2), if this CPU runs it.
const KernelTable* half_width_kernels(const KernelTable& main);

// Whether ops of this type run kernels whose speed depends on the table (convolutions, 1x1s, SE, Ghost modules).
bool op_has_table_choice(const OpSpec& op);

// The faster of `main` and `narrow` for `op`, timed on one image at one thread with synthetic data of the op's
// shapes; `narrow` only when it is clearly faster (kNarrowMargin), so that noise leaves the main table in place.
// Decisions are cached per process by table pair and shapes: models that share layer shapes, and engines built
// again, reuse them.
const KernelTable* faster_table(const ProgramSpec& p, const OpSpec& op, const KernelTable& main,
                                const KernelTable& narrow);
constexpr double kNarrowMargin = 0.97;
// Ops whose input and output planes together exceed this many floats (one image) are not timed and stay on the
// main table: the synthetic planes would cost their size in memory and the timing that much longer, at sizes
// (inputs well beyond 224 x 224) where the narrow layers' lane waste is no longer the bottleneck. Every op of the
// zoo at 224 x 224 is below it (the largest, 112 x 112 x 96 plus its input, is about 1.4 M floats).
constexpr int64_t kMaxTrialFloats = int64_t{4} << 20;

}  // namespace ghostfast
