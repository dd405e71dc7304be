#!/usr/bin/env bash
# AddressSanitizer + UndefinedBehaviorSanitizer runs (GCC; README, "Sanitizers and fuzzing").
#
#   scripts/sanitize.sh native   the host-asan preset: the native tools and the C++ tests (kernel sweeps on every
#                                table, engine files and their malformed variants, saved engines against torch, the
#                                .npy reader, ghostfast-bench's outputs and error exits) built with the sanitizers,
#                                run by ctest; any report fails the test, leaks included. A few minutes; CI runs it.
#   scripts/sanitize.sh python   the extension module built with the sanitizers (the asan-python preset), and
#                                tests/test_engine.py and tests/test_kernels.py run against it under the ASan runtime
#                                (LD_PRELOAD). The longer run: well over half an hour on 2 cores.
#   scripts/sanitize.sh          both.
#
# The python run uses the active Python (or $PYTHON), which must have the test dependencies (numpy, torch, pytest)
# and nanobind. It never touches that environment: it builds into build/asan-python/, copies python/ghostfast and
# the sanitized _core next to each other under build/asan-python/site/, and runs pytest from a bare virtual
# environment (build/asan-python/venv) whose path is that copy first, then the active Python's site-packages, so
# an installed ghostfast (editable or not) is not the one tested. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

what=all
if (($#)) && [[ $1 == native || $1 == python || $1 == all ]]; then
  what=$1
  shift
fi

# Every report stops the process with a non-zero exit code (the build has -fno-sanitize-recover=undefined).
asan_checks="halt_on_error=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1"
ubsan_options="halt_on_error=1:print_stacktrace=1"

native() {
  echo "sanitize: native tools and C++ tests (build/host-asan)"
  cmake --preset host-asan >/dev/null
  cmake --build --preset host-asan
  ctest --preset host-asan  # ASAN_OPTIONS / UBSAN_OPTIONS (leaks included) are set by the test preset
}

python_tests() {
  local py
  py=$(command -v "${PYTHON:-python}")
  "$py" -c "import numpy, torch, pytest, nanobind" || {
    echo "sanitize: $py needs numpy, torch, pytest and nanobind (pip install -c constraints-cpu.txt '.[test]' nanobind)" >&2
    return 1
  }
  echo "sanitize: the extension module (build/asan-python)"
  cmake --preset asan-python -Dnanobind_DIR="$("$py" -m nanobind --cmake_dir)" -DPython_EXECUTABLE="$py" >/dev/null
  cmake --build --preset asan-python

  # The ASan runtime, and the C++ runtime with it: ASan's __cxa_throw interceptor needs libstdc++ loaded when it
  # starts, and the interpreter does not link it (without it the first C++ exception aborts in a CHECK).
  local cxx runtime="" lib path
  cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' build/asan-python/CMakeCache.txt)
  for lib in libasan.so libstdc++.so; do
    path=$("$cxx" -print-file-name="$lib")
    if [[ $path != /* || ! -e $path ]]; then
      echo "sanitize: $cxx does not know its $lib ('$path'); the python run needs GCC's runtimes" >&2
      return 1
    fi
    runtime="$runtime${runtime:+:}$(realpath "$path")"
  done

  local site=build/asan-python/site venv=build/asan-python/venv
  rm -rf "$site"
  mkdir -p "$site"
  cp -R python/ghostfast "$site/ghostfast"
  find "$site/ghostfast" -name "_core*.so" -delete
  cp build/asan-python/_core*.so "$site/ghostfast/"
  [[ -x $venv/bin/python ]] || "$py" -m venv --without-pip "$venv"
  {
    echo "$PWD/$site"
    "$py" -c "import sysconfig; p = sysconfig.get_paths(); print(p['purelib']); print(p['platlib'])"
  } >"$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/ghostfast-asan.pth"
  # Python itself is not instrumented and frees what it holds at exit in its own time: no leak checks here (the
  # native run checks the engine for leaks). PYTHONMALLOC=malloc puts Python's small objects on ASan's heap too.
  # The ASan runtime must be loaded before everything else (the interpreter is not linked with it): LD_PRELOAD.
  export LD_PRELOAD="$runtime${LD_PRELOAD:+:$LD_PRELOAD}" ASAN_OPTIONS="detect_leaks=0:$asan_checks" \
    UBSAN_OPTIONS="$ubsan_options" PYTHONMALLOC=malloc
  "$venv/bin/python" - "$PWD/$site" <<'PY'
import sys
import ghostfast._core
if not ghostfast._core.__file__.startswith(sys.argv[1]):
    sys.exit(f"sanitize: ghostfast._core comes from {ghostfast._core.__file__}, not the sanitized build")
PY
  # A report aborts the process, and one written while pytest held the process's stderr would be lost with it:
  # pytest captures sys.stderr only (--capture=sys), and ASan's reports also go to files (one per process, the
  # tests' subprocesses included), shown at the end.
  local logs="$PWD/build/asan-python/reports"
  rm -rf "$logs"
  mkdir -p "$logs"
  ASAN_OPTIONS="$ASAN_OPTIONS:log_path=$logs/asan" UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$logs/ubsan"
  echo "sanitize: tests/test_engine.py tests/test_kernels.py under ASan + UBSan ($runtime)"
  local rc=0
  "$venv/bin/python" -m pytest -p no:cacheprovider --capture=sys tests/test_engine.py tests/test_kernels.py "$@" || rc=$?
  if compgen -G "$logs/*" >/dev/null; then
    echo "sanitize: sanitizer reports ($logs):" >&2
    cat "$logs"/* >&2
    ((rc)) || rc=1
  fi
  return "$rc"
}

case $what in
  native) native ;;
  python) python_tests "$@" ;;
  all) native && python_tests "$@" ;;
esac
