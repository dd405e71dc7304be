"""No AVX2 / AVX-512 instruction can reach a CPU without it.

The kernels for each ISA are compiled in their own translation unit with their own flags, and run only when
dispatch selects them from the CPU's features. Two ways that guarantee breaks are checked here on the
object files of the build: (1) wide-register code appearing in a baseline translation unit, and (2) an
inline / template function (a weak COMDAT symbol) defined both in an ISA unit and elsewhere: the linker keeps
one copy, which may be the AVX-512 one, and every caller then runs it.

The objects live in the scikit-build build directory (``build/<wheel tag>/``), which exists after
``pip install .`` from a checkout; elsewhere the test is skipped with that reason.
"""
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ISA_UNITS = {"avx2.cpp.o": ("ymm",), "avx512.cpp.o": ("ymm", "zmm")}


def _objects() -> list[Path]:
    found = sorted(ROOT.glob("build/*/CMakeFiles/ghostfast_native.dir/cpp/src/**/*.o"))
    if not found:
        pytest.skip("no build directory with object files (install from a checkout with `pip install .`)")
    if not shutil.which("objdump") or not shutil.which("nm"):
        pytest.skip("binutils (objdump, nm) not installed")
    # The newest build only (a checkout may hold builds for several wheel tags).
    build_dirs = {ROOT.joinpath(*p.relative_to(ROOT).parts[:2]) for p in found}
    newest = max(build_dirs, key=lambda d: d.stat().st_mtime)
    return [p for p in found if newest in p.parents]


def _wide_registers(obj: Path) -> set[str]:
    text = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(obj)], capture_output=True, text=True,
                          check=True).stdout
    return {reg for reg in ("ymm", "zmm") if f"%{reg}" in text}


def _weak_symbols(obj: Path) -> set[str]:
    out = subprocess.run(["nm", "--defined-only", str(obj)], capture_output=True, text=True, check=True).stdout
    return {line.split()[-1] for line in out.splitlines() if len(line.split()) == 3 and line.split()[1] in "WVu"}


def test_wide_registers_only_in_their_isa_units():
    objs = _objects()
    seen = {o.name: _wide_registers(o) for o in objs if o.name in ISA_UNITS}
    # The scan must see what the ISA units do contain, or finding nothing elsewhere would mean nothing.
    assert seen.get("avx2.cpp.o") == {"ymm"} and "zmm" in seen.get("avx512.cpp.o", set())
    for obj in objs:
        allowed = ISA_UNITS.get(obj.name, ())
        leaked = _wide_registers(obj) - set(allowed)
        assert not leaked, f"{obj.name} uses {sorted(leaked)} registers outside its ISA unit"


def test_no_inline_function_shared_with_an_isa_unit():
    objs = _objects()
    weak = {obj: _weak_symbols(obj) for obj in objs}
    for isa_obj in (o for o in objs if o.name in ISA_UNITS):
        for other in objs:
            if other == isa_obj:
                continue
            shared = weak[isa_obj] & weak[other]
            assert not shared, (f"{isa_obj.name} and {other.name} both define inline symbols the linker may merge: "
                                f"{sorted(shared)[:5]}")
