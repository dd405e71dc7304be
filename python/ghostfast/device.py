"""Running the native engine on a phone over ``adb``: ``ghostfast compare --device adb[:SERIAL]``.

The host does everything that needs Python and torch: it exports each model (:func:`ghostfast.export.export_model`:
the engine file, the seeded input and torch's output), pushes the files and the statically linked aarch64
``ghostfast-bench`` to a device directory, and runs the binary there with ``adb shell``. Per model and thread
count, the device first runs the input once and writes its logits (``--output``); they are pulled back and
checked against torch with the rule every backend gets (:func:`ghostfast.comparison.checked_fields`). Only a
passing file is then timed (``--json``); the JSON's statistics become the record. A failing run, a bench error
or an adb failure becomes a record with status ``error`` / ``mismatch`` and no timing, as on the host.

Module-level imports are the standard library only: the command-line parser imports :class:`DeviceError`.
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

DEFAULT_BENCH = Path("build") / "aarch64" / "ghostfast-bench"
DEFAULT_DEVICE_DIR = "/data/local/tmp/ghostfast"  # the one place adb's shell user may write and execute
BUILD_HINT = ("build it in the ghostfast source tree with `cmake --preset aarch64 && cmake --build --preset "
              "aarch64` (needs g++-aarch64-linux-gnu), or give its path with --device-bench PATH")
# A phone runs a model's timed iterations in seconds; the generous limit is for slow boards and for the
# stand-in, which emulates the binary under qemu (20-50x slower). It only stops a hung device from hanging us.
RUN_TIMEOUT_S = 1800
ADB_TIMEOUT_S = 300

# ELF e_machine of the binary -> the `uname -m` names of a device that runs it.
_ELF_MACHINES = {183: ("aarch64", "arm64", "armv8l"), 62: ("x86_64",), 40: ("armv7l", "armv8l", "arm"),
                 3: ("i686", "i386", "x86")}
_ELF_NAMES = {183: "aarch64", 62: "x86_64", 40: "32-bit ARM", 3: "x86"}

# CPU part numbers of /proc/cpuinfo, by implementer, for the environment's "4x Cortex-A55 + 4x Cortex-A76".
_ARM_PARTS = {
    0x41: {0xd03: "Cortex-A53", 0xd04: "Cortex-A35", 0xd05: "Cortex-A55", 0xd07: "Cortex-A57",
           0xd08: "Cortex-A72", 0xd09: "Cortex-A73", 0xd0a: "Cortex-A75", 0xd0b: "Cortex-A76",
           0xd0c: "Neoverse-N1", 0xd0d: "Cortex-A77", 0xd40: "Neoverse-V1", 0xd41: "Cortex-A78",
           0xd44: "Cortex-X1", 0xd46: "Cortex-A510", 0xd47: "Cortex-A710", 0xd48: "Cortex-X2",
           0xd49: "Neoverse-N2", 0xd4d: "Cortex-A715", 0xd4e: "Cortex-X3", 0xd4f: "Neoverse-V2",
           0xd80: "Cortex-A520", 0xd81: "Cortex-A720", 0xd82: "Cortex-X4"},
    0x51: {0x800: "Kryo 2xx Gold", 0x801: "Kryo 2xx Silver", 0x802: "Kryo 3xx Gold", 0x803: "Kryo 3xx Silver",
           0x804: "Kryo 4xx Gold", 0x805: "Kryo 4xx Silver"},
}


class DeviceError(RuntimeError):
    """adb is missing, the device is not there, or the bench binary cannot run on it; the message says why."""


def parse_spec(spec: str) -> str | None:
    """The serial of a ``--device`` value: ``"adb"`` -> None (the only device), ``"adb:SERIAL"`` -> SERIAL."""
    if not isinstance(spec, str):
        raise TypeError(f"device must be 'adb' or 'adb:SERIAL', got {type(spec).__name__}")
    kind, _, serial = spec.partition(":")
    if kind != "adb" or (_ and not serial):
        raise ValueError(f"--device takes 'adb' or 'adb:SERIAL' (a serial from `adb devices`), got {spec!r}")
    return serial or None


def elf_machine(path) -> int | None:
    """e_machine of an ELF file (183 = AArch64, 62 = x86-64), None when ``path`` is not ELF."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return None
    return int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")


def summarize_cpuinfo(text: str) -> dict:
    """Cores, a core-type summary and the ISA features from an ARM /proc/cpuinfo.

    Android kernels name no "model name"; the cores are told apart by implementer and part number (on a
    big.LITTLE phone a 1-thread run lands on whichever core type the scheduler picks, so the mix matters).
    """
    cores, parts, features, hardware = 0, [], [], None
    implementer = None
    for line in text.splitlines():
        key, _, value = (s.strip() for s in line.partition(":"))
        if key == "processor" and value.isdigit():
            cores += 1
        elif key == "CPU implementer":
            implementer = int(value, 16)
        elif key == "CPU part" and implementer is not None:
            part = int(value, 16)
            unknown = f"implementer 0x{implementer:02x} part 0x{part:03x}"
            parts.append(_ARM_PARTS.get(implementer, {}).get(part, unknown))
        elif key == "Features" and not features:
            features = value.split()
        elif key in ("Hardware", "model name") and value:
            hardware = hardware or value
    counts: dict[str, int] = {}
    for p in parts:
        counts[p] = counts.get(p, 0) + 1
    mix = " + ".join(f"{n}x {p}" for p, n in counts.items())
    return {"cores": cores or len(parts) or None, "cpu": mix or hardware or None, "hardware": hardware,
            "features": features}


def _getprops(text: str) -> dict[str, str]:
    # `getprop` with no argument prints every property as "[key]: [value]", one a line: one round trip.
    return dict(re.findall(r"^\[([^\]]+)\]: \[(.*)\]\s*$", text, flags=re.MULTILINE))


def _last_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [ln.strip() for ln in (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines() if ln.strip()]
    mine = [ln for ln in lines if ln.startswith("ghostfast-bench: error:")]
    return (mine or lines or [f"exit code {proc.returncode}"])[-1]


class AdbDevice:
    """One device over adb, with the bench binary pushed to ``device_dir``; use as a context manager.

    ``serial``: a serial from ``adb devices`` (None: the only device attached). ``bench``: the aarch64
    ``ghostfast-bench`` on this machine. Construction checks adb, the device and the binary and reads the
    device's model and CPU; :meth:`setup` (or ``with``, which also cleans up) pushes the binary.
    """

    def __init__(self, serial: str | None = None, bench=DEFAULT_BENCH, device_dir: str = DEFAULT_DEVICE_DIR,
                 adb: str = "adb") -> None:
        self.serial = serial
        self.device_dir = device_dir.rstrip("/") or "/"
        self.bench = Path(bench)
        self.adb = shutil.which(adb)
        if self.adb is None:
            raise DeviceError(f"{adb!r} not found on PATH: install Android platform-tools "
                              "(https://developer.android.com/tools/releases/platform-tools) and put adb on PATH")
        if not self.bench.is_file():
            raise DeviceError(f"no ghostfast-bench at {self.bench}: {BUILD_HINT}")
        self._check_attached()
        self.info = self._read_info()
        self._check_bench_runs_here()
        self.backend = "native@" + (self.info["model"] or self.serial or "device").replace("|", "/")
        self.remote_bench = f"{self.device_dir}/ghostfast-bench"
        self._tmp = tempfile.TemporaryDirectory(prefix="ghostfast-device-")
        self._failed: dict[tuple, str] = {}  # (model, batch) -> why its files are not on the device
        self._isas: list[str] = []

    # ---- adb ----------------------------------------------------------------------------------------------
    def _adb(self, *args: str, timeout: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess:
        cmd = [self.adb, *(("-s", self.serial) if self.serial else ()), *args]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        except subprocess.TimeoutExpired:
            raise DeviceError(f"`adb {' '.join(args)}` did not finish in {timeout:.0f} s") from None

    def _checked(self, *args: str, timeout: float = ADB_TIMEOUT_S) -> str:
        proc = self._adb(*args, timeout=timeout)
        if proc.returncode != 0:
            raise DeviceError(f"`adb {' '.join(args)}` failed: {_last_error_line(proc)}")
        return proc.stdout

    def shell(self, *argv: str, timeout: float = ADB_TIMEOUT_S) -> subprocess.CompletedProcess:
        """Run one command on the device (arguments quoted for its shell). adb passes the exit status on
        since Android 7 (the shell protocol); older devices report 0 and errors show in the output only."""
        return self._adb("shell", shlex.join(argv), timeout=timeout)

    def _check_attached(self) -> None:
        proc = self._adb("devices")
        if proc.returncode != 0:
            raise DeviceError(f"`adb devices` failed: {_last_error_line(proc)}")
        # "SERIAL<tab>STATE" lines, after the "List of devices attached" header and any "* daemon ..." notes.
        states = dict(ln.split("\t")[:2] for ln in proc.stdout.splitlines() if ln.count("\t") >= 1)
        if self.serial is None:
            # The one device ready, else the one device listed (whose state then says what to do).
            ready = [s for s, st in states.items() if st == "device"] or (list(states) if len(states) == 1 else [])
            if len(ready) != 1:
                listing = ", ".join(f"{s} ({st})" for s, st in states.items()) or "none"
                raise DeviceError(f"--device adb needs exactly one attached device, adb lists: {listing}; "
                                  "connect one (USB debugging on) or pick one with --device adb:SERIAL")
            self.serial = ready[0]
        state = states.get(self.serial)
        if state != "device":
            hint = {"unauthorized": "accept the USB debugging prompt on the phone",
                    "offline": "reconnect the cable or restart adb (adb kill-server)",
                    None: "`adb devices` does not list it"}.get(state, f"its state is {state!r}")
            raise DeviceError(f"device {self.serial!r} is not ready: {hint}")

    def _read_info(self) -> dict:
        props = _getprops(self.shell("getprop").stdout)
        cpu = summarize_cpuinfo(self.shell("cat", "/proc/cpuinfo").stdout)
        machine = self.shell("uname", "-m").stdout.strip()
        return {"transport": "adb", "serial": self.serial, "model": props.get("ro.product.model", ""),
                "manufacturer": props.get("ro.product.manufacturer", ""),
                "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", ""),
                "android": props.get("ro.build.version.release", ""), "abi": props.get("ro.product.cpu.abi", ""),
                "machine": machine, **cpu}

    def _check_bench_runs_here(self) -> None:
        em = elf_machine(self.bench)
        if em is None:
            raise DeviceError(f"{self.bench} is not an executable (ELF) file: {BUILD_HINT}")
        machine = self.info["machine"]
        if machine not in _ELF_MACHINES.get(em, ()):
            raise DeviceError(f"{self.bench} is built for {_ELF_NAMES.get(em, f'ELF machine {em}')}, the device is "
                              f"{machine or 'unknown'} ({self.info['abi'] or 'no ABI reported'}): {BUILD_HINT}")

    # ---- setup and files -------------------------------------------------------------------------------------
    def setup(self) -> "AdbDevice":
        """Create the device directory and push the bench binary (made executable)."""
        self._checked("shell", shlex.join(["mkdir", "-p", self.device_dir]))
        self._checked("push", str(self.bench), self.remote_bench)
        self._checked("shell", shlex.join(["chmod", "755", self.remote_bench]))
        return self

    def _remote(self, name: str) -> str:
        return f"{self.device_dir}/{name}"

    def prepare(self, name: str, model, x) -> None:
        """Export ``model`` on input ``x`` (the same way ``ghostfast export`` does) and push its files.

        A failure is remembered, not raised: every cell of this model then becomes an ``error`` record.
        """
        from .export import export_model

        key = (name, int(x.shape[0]))
        stem = self._stem(*key)
        try:
            entry = export_model(name, model, x, self._tmp.name, stem=stem)
            for f in (entry["files"]["engine"], entry["files"]["input"]):
                self._checked("push", str(Path(self._tmp.name) / f), self._remote(f))
            self._failed.pop(key, None)
        except Exception as e:  # one model failing to export or push must not end the comparison
            self._failed[key] = f"prepare failed: {type(e).__name__}: {e}"
        finally:
            for p in Path(self._tmp.name).glob(f"{stem}.*"):
                p.unlink()

    def release(self, name: str, batch: int) -> None:
        """Remove one model's files from the device (engine files reach tens of MB each)."""
        stem = self._stem(name, batch)
        try:
            self.shell("rm", "-f", *(self._remote(f) for f in (f"{stem}.gfe", f"{stem}.input.npy", f"{stem}.out.npy")))
        except DeviceError:
            pass  # files left behind cost space on the device, not a wrong result

    @staticmethod
    def _stem(name: str, batch: int) -> str:
        return name if batch == 1 else f"{name}.b{batch}"

    # ---- running -----------------------------------------------------------------------------------------------
    def _run_bench(self, stem: str, *options: str) -> subprocess.CompletedProcess:
        return self.shell(self.remote_bench, self._remote(f"{stem}.gfe"), "--input",
                          self._remote(f"{stem}.input.npy"), *options, timeout=RUN_TIMEOUT_S)

    def output(self, name: str, batch: int, threads: int):
        """The device's logits for the model's input (one untimed run, ``--output``, pulled back)."""
        import numpy as np

        stem = self._stem(name, batch)
        remote_out = self._remote(f"{stem}.out.npy")
        self.shell("rm", "-f", remote_out)  # a stale file from an earlier run must not pass the check
        proc = self._run_bench(stem, "--threads", str(threads), "--iters", "1", "--warmup", "0",
                               "--output", remote_out)
        if proc.returncode != 0:
            raise DeviceError(f"ghostfast-bench failed: {_last_error_line(proc)}")
        local = Path(self._tmp.name) / f"{stem}.out.npy"
        self._checked("pull", remote_out, str(local))
        try:
            return np.load(local, allow_pickle=False)
        finally:
            local.unlink()

    def timed(self, name: str, batch: int, threads: int, iters: int, warmup: int) -> dict:
        """The bench's JSON summary of ``iters`` timed runs after ``warmup`` untimed ones."""
        proc = self._run_bench(self._stem(name, batch), "--threads", str(threads), "--iters", str(iters),
                               "--warmup", str(warmup), "--json")
        if proc.returncode != 0:
            raise DeviceError(f"ghostfast-bench failed: {_last_error_line(proc)}")
        doc = next((json.loads(ln) for ln in reversed(proc.stdout.splitlines()) if ln.strip().startswith("{")), None)
        missing = [k for k in ("isa", "threads", "iters", "min_ms", "median_ms", "mean_ms", "max_ms")
                   if not isinstance(doc, dict) or k not in doc]
        if missing:
            raise DeviceError(f"ghostfast-bench --json printed no summary with {', '.join(missing)}: "
                              f"{proc.stdout.strip()[-200:]!r}")
        if doc["isa"] not in self._isas:
            self._isas.append(doc["isa"])
        self.info.setdefault("bench_cpu", doc.get("cpu"))
        return doc

    def measure(self, name: str, batch: int, reference, threads: int, iters: int, warmup: int,
                tolerance: float, check: bool = True) -> dict:
        """The device's part of one record: checked against ``reference``, then timed (fields as on the host)."""
        from .comparison import checked_fields

        if (name, batch) in self._failed:
            return {"status": "error", "reason": self._failed[(name, batch)]}
        fields: dict = {}
        try:
            if check:
                fields = checked_fields(self.output(name, batch, threads), reference, tolerance)
                if fields.get("status") == "mismatch":
                    return fields
            doc = self.timed(name, batch, threads, iters, warmup)
        except Exception as e:  # a failed run or a lost device is one error record, as a failing backend is
            reason = str(e) if isinstance(e, DeviceError) else f"{type(e).__name__}: {e}"
            return {**fields, "status": "error", "reason": f"run failed on the device: {reason}"}
        # One process, one run: no rounds, so no p10, spread or drift; p90 comes from the bench.
        return {**fields, "status": "ok", "reason": None, "threads": int(doc["threads"]),
                "median_ms": float(doc["median_ms"]), "mean_ms": float(doc["mean_ms"]),
                "min_ms": float(doc["min_ms"]), "p90_ms": None if doc.get("p90_ms") is None else float(doc["p90_ms"]),
                "iters": int(doc["iters"]), "rounds": 1, "warmup": int(doc.get("warmup", warmup))}

    def describe(self) -> dict:
        """The environment's ``device`` entry: model, SoC, CPU cores, ABI, and the kernel table the bench used."""
        return {**self.info, "backend": self.backend, "engine_isa": list(self._isas), "bench": str(self.bench),
                "device_dir": self.device_dir}

    def close(self) -> None:
        """Remove the bench from the device and the local temporary files (model files go per model)."""
        try:
            self.shell("rm", "-f", self.remote_bench)
        except DeviceError:
            pass  # a device unplugged mid-run: nothing to clean there
        self._tmp.cleanup()

    def __enter__(self) -> "AdbDevice":
        return self.setup()

    def __exit__(self, *exc) -> None:
        self.close()


def open_device(device, bench=None, device_dir: str | None = None) -> AdbDevice:
    """An :class:`AdbDevice` from a ``--device`` value (``"adb"`` / ``"adb:SERIAL"``), or ``device`` itself."""
    if isinstance(device, AdbDevice):
        return device
    return AdbDevice(parse_spec(device), bench=bench or DEFAULT_BENCH, device_dir=device_dir or DEFAULT_DEVICE_DIR)
