"""The ``ghostfast`` command: list, profile, structure, bench, compare, eval, export."""
from __future__ import annotations

import argparse
import json
import sys

from . import report
from .device import DEFAULT_BENCH, DEFAULT_DEVICE_DIR, DeviceError


# ghostfast.comparison.DEFAULT_BACKENDS, repeated so building the parser does not import torch.
DEFAULT_COMPARE_BACKENDS = ("native", "torch", "onnxruntime")


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _input_size(values: list[int] | None):
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cmd_list(args) -> str:
    from .models import registry

    rows = []
    by_target: dict[str, list[str]] = {}
    for alias, target in registry.aliases().items():
        by_target.setdefault(target, []).append(alias)
    for name in registry.names():
        s = registry.spec(name)
        rows.append({"model": name, "family": s.family, "input": "x".join(map(str, s.input_size)),
                     "canonical": s.canonical, "aliases": ", ".join(by_target.get(name, []))})
    return report.render(rows, args.format)


def cmd_profile(args) -> str:
    from .profiler import profile

    prof = profile(args.model, _input_size(args.input_size))
    if args.format == "json":
        return json.dumps({**prof.summary(), "layers": [r.as_dict() for r in prof.layers]}, indent=2)
    if args.format == "csv":
        return report.to_csv([r.as_dict() for r in prof.layers])
    text = str(prof)
    if args.layers or args.format == "md":
        text += "\n\n" + prof.table("github" if args.format == "md" else "simple")
    return text


def cmd_structure(args) -> str:
    from .stage_table import structure, structure_summary

    if args.model is None:
        rows = structure_summary()
        return report.render(rows, args.format)
    s = structure(args.model, _input_size(args.input_size))
    if args.format == "text":
        return str(s)
    return report.render(s.rows, args.format)


def cmd_bench(args) -> str:
    from .benchmark import bench

    r = bench(args.model, iters=args.iters, backend=args.backend, threads=args.threads, batch=args.batch,
              warmup=args.warmup, input_size=_input_size(args.input_size))
    if args.format == "json":
        return json.dumps(r.as_dict(samples=args.samples), indent=2)
    return repr(r)


def cmd_compare(args) -> str:
    import contextlib

    from .comparison import compare

    backends = [] if args.backends.strip().lower() == "none" else _csv_list(args.backends)
    if not backends and not args.device:
        raise ValueError("--backends none leaves nothing to compare without --device")
    with contextlib.ExitStack() as stack:
        device = None
        if args.device:
            from .device import AdbDevice, parse_spec

            device = stack.enter_context(AdbDevice(parse_spec(args.device), bench=args.device_bench,
                                                   device_dir=args.device_dir))
        result = compare(models=_csv_list(args.models) if args.models else None, backends=backends,
                         threads=args.threads, batch=args.batch, iters=args.iters, rounds=args.rounds,
                         warmup=args.warmup, baseline=args.baseline, check=not args.no_check,
                         progress=not args.no_progress, device=device)
    if result.interrupted:
        print("interrupted: keeping what was measured before Ctrl-C", file=sys.stderr)
        args.exit_code = 130  # the output is written, but a script should know the run is incomplete
    if args.out:
        _write_compare_dir(result, args)
    if args.format == "md":
        from .compare_report import summary_markdown

        hint = "" if args.out else "\n\n(--out DIR also writes report.md, results.csv, results.json and the plots)"
        return summary_markdown(result) + hint
    if args.format == "json":
        return report.to_json(list(result), result.environment, settings=result.settings,
                              interrupted=result.interrupted, wall_s=result.wall_s)
    return report.to_csv(list(result))


def _write_compare_dir(result, args) -> None:
    from .backends import BackendUnavailable
    from .compare_report import write_report
    from .comparison import op_breakdown

    breakdown, note = None, None
    if args.no_plots or result.interrupted:
        note = "skipped (--no-plots)" if args.no_plots else "skipped (run interrupted)"
    else:
        try:
            breakdown = op_breakdown(threads=min(result.settings["threads"]))
        except BackendUnavailable as e:
            note = str(e)
        except KeyboardInterrupt:  # Ctrl-C here still writes the tables measured so far
            note = "skipped (interrupted)"
        except Exception as e:  # the tables are worth writing even if the profiler fails
            note = f"{type(e).__name__}: {e}"
    try:
        paths = write_report(result, args.out, plots=not args.no_plots, breakdown=breakdown,
                             breakdown_threads=min(result.settings["threads"]), breakdown_note=note)
    except ImportError as e:  # matplotlib missing: write the tables, say what to install for the plots
        print(f"plots skipped: {e}", file=sys.stderr)
        paths = write_report(result, args.out, plots=False, breakdown=breakdown,
                             breakdown_threads=min(result.settings["threads"]), breakdown_note=note)
    print("wrote " + ", ".join(str(p) for p in paths), file=sys.stderr)


# ---- export: engine files, inputs and torch outputs for a device (ghostfast.export) ---------------------------------
def cmd_export(args) -> str:
    from .export import MANIFEST, export

    manifest = export(models=_csv_list(args.models) if args.models else None, out_dir=args.out,
                      weights=args.weights, weights_format=args.weights_format, seed=args.seed,
                      progress=not args.no_progress)
    rows = [{"model": m["model"], "engine": m["files"]["engine"], "input": "x".join(map(str, m["input_shape"])),
             "classes": m["classes"], "params (M)": f"{m['params'] / 1e6:.2f}", "MACs (M)": f"{m['macs'] / 1e6:.0f}",
             "weights": m["weights"]["format"] if m["weights"] else "zoo init, BN randomized",
             "host check": f"{m['host_check']['max_rel_err']:.1e} ({m['host_check']['isa']})"}
            for m in manifest["models"]]
    return report.render(rows, "md") + f"\n\nwrote {len(rows)} models and {MANIFEST} to {args.out}"


def add_export_parser(sub) -> None:
    sp = sub.add_parser("export", help="engine files + reference input + torch output per model, for a device",
                        description="Write NAME.gfe (the native engine, batch 1), NAME.input.npy (a seeded input) "
                                    "and NAME.torch.npy (torch eager's logits on it) per zoo model, plus "
                                    "manifest.json, for ghostfast-bench on a phone or board: `ghostfast-bench "
                                    "NAME.gfe --input NAME.input.npy --output y.npy` and compare y with torch's.")
    sp.add_argument("--models", help="comma-separated names or aliases (default: the whole zoo, 20 models)")
    sp.add_argument("--weights", help="a checkpoint for one model (.pth / .pt / .bin / .safetensors), loaded as "
                                      "`ghostfast eval --weights` loads it; the model is detected from it without "
                                      "--models (default: the zoo's own initialisation with randomized BN "
                                      "statistics, as `ghostfast compare` measures)")
    sp.add_argument("--weights-format", help="force the checkpoint format, e.g. timm:tf_efficientnet_lite0 "
                                             "(default: detected from the keys)")
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of the zoo initialisation, the BN randomization and the input; 0 is what "
                         "`ghostfast compare` measures (default: %(default)s)")
    sp.add_argument("--out", required=True, metavar="DIR", help="folder to write the files into (created)")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_export)


# ---- eval: ImageNet accuracy (ghostfast.accuracy) ---------------------------------------------------------------
def cmd_eval(args) -> str:
    from .accuracy import evaluate, save_result

    overrides = {k: v for k, v in (("resize", args.resize), ("crop", args.crop),
                                   ("interpolation", args.interpolation)) if v is not None}
    r = evaluate(args.model, args.data, weights=args.weights, backend=args.backend, limit=args.limit,
                 batch=args.batch, workers=args.workers, threads=args.threads, labels=args.labels,
                 preprocess=overrides or None, format=args.weights_format, progress=not args.no_progress)
    if not args.no_save:
        print(f"result saved to {save_result(r, args.results)}", file=sys.stderr)
    if args.format == "json":
        return json.dumps(r.as_dict(), indent=2)
    return (report.render([r.row()], "md") + f"\n\n{r.images} images of {r.data} ({r.layout}); "
            f"preprocessing: {r.preprocess['source']}")


def add_eval_parser(sub) -> None:
    sp = sub.add_parser("eval", help="ImageNet top-1 / top-5 of a model with pretrained weights, on any backend")
    sp.add_argument("--data", required=True, help="validation folder: synset sub-folders, or images + ground truth")
    sp.add_argument("--model", help="zoo model name (default: the model the --weights are for)")
    sp.add_argument("--weights", help="checkpoint: .pth / .pt / .bin / .safetensors (read without unpickling code)")
    sp.add_argument("--weights-format", help="force the checkpoint format, e.g. timm:tf_efficientnet_lite0")
    sp.add_argument("--backend", choices=("torch", "native", "onnxruntime"), default="torch")
    sp.add_argument("--labels", help="ground-truth file of a flat folder (LOC_val_solution.csv is found by itself)")
    sp.add_argument("--limit", type=int, help="evaluate this many images, spread evenly over the set")
    sp.add_argument("--batch", type=int, default=50)
    sp.add_argument("--workers", type=int, help="image decoding threads (default: min(8, CPUs); 0: none)")
    sp.add_argument("--threads", type=int, help="the backend's intra-op threads")
    sp.add_argument("--resize", type=int, help="override the checkpoint's resize (shorter side)")
    sp.add_argument("--crop", type=int, help="override the checkpoint's center-crop size")
    sp.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"), help="override the resize filter")
    sp.add_argument("--results", help="results file to add to (default: ~/.cache/ghostfast/accuracy.json)")
    sp.add_argument("--no-save", action="store_true", help="do not store the result")
    sp.add_argument("--format", choices=("md", "json"), default="md")
    sp.add_argument("--output", "-o", help="write to this file instead of stdout")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_eval)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ghostfast", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = p.add_subparsers(dest="command", required=True)

    sp = sub.add_parser("list", help="zoo models with family, input size, canonical source and aliases")
    sp.add_argument("--format", choices=report.FORMATS, default="md")
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("profile", help="params, MACs, bytes and the per-layer table of one model")
    sp.add_argument("model")
    sp.add_argument("--input-size", type=int, nargs="+", metavar="N", help="H or H W (default: the model's)")
    sp.add_argument("--layers", action="store_true", help="also print the per-layer table")
    sp.add_argument("--format", choices=("text", *report.FORMATS), default="text")
    sp.set_defaults(func=cmd_profile)

    sp = sub.add_parser("structure", help="the stage table of one model, or the summary of all models")
    sp.add_argument("model", nargs="?", help="a model name (omit for the side-by-side summary of the zoo)")
    sp.add_argument("--input-size", type=int, nargs="+", metavar="N")
    sp.add_argument("--format", choices=("text", *report.FORMATS), default="md")
    sp.set_defaults(func=cmd_structure)

    sp = sub.add_parser("bench", help="latency of one model on one backend")
    sp.add_argument("model")
    sp.add_argument("--iters", type=int, default=1000)
    sp.add_argument("--warmup", type=int, default=None)
    sp.add_argument("--backend", default="torch")
    sp.add_argument("--threads", type=int, default=None)
    sp.add_argument("--batch", type=int, default=1)
    sp.add_argument("--input-size", type=int, nargs="+", metavar="N")
    sp.add_argument("--format", choices=("text", "json"), default="text")
    sp.add_argument("--samples", action="store_true", help="include raw samples in the JSON")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("compare", help="every model on every backend, measured the same way: tables and plots",
                        description="Time zoo models on several backends interleaved (A B C A B C ...) at each "
                                    "thread count; print the tables, or write report.md, results.csv, "
                                    "results.json and PNG plots with --out DIR.")
    sp.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    sp.add_argument("--backends", default=",".join(DEFAULT_COMPARE_BACKENDS),
                    help="comma-separated backends run on this machine (default: %(default)s; also "
                         "torch-compiled, torchscript, torch-cuda, onnxruntime-cuda); they run with --device too, "
                         "in the same report: give `none` to run the device alone")
    sp.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="intra-op thread counts, one cell each (default: 1 2)")
    sp.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, one cell each (default: 1)")
    sp.add_argument("--iters", type=int, default=50, help="timed iterations per cell (default: %(default)s)")
    sp.add_argument("--rounds", type=int, default=5, help="interleaved rounds the iterations are split into "
                                                          "(default: %(default)s)")
    sp.add_argument("--warmup", type=int, default=None, help="untimed iterations before each round (default: 2)")
    sp.add_argument("--baseline", default=None, help="backend the ratios divide by (default: onnxruntime if "
                                                     "compared, else the first backend)")
    sp.add_argument("--no-check", action="store_true", help="skip the output check against torch")
    sp.add_argument("--device", metavar="adb[:SERIAL]",
                    help="also run the native engine on a phone over adb (SERIAL from `adb devices`; without it, "
                         "the only device attached): each model is exported, pushed with ghostfast-bench, checked "
                         "against torch there and timed (--iters after --warmup, in one run); rows "
                         "`native@<device model>` (default: no device)")
    sp.add_argument("--device-bench", default=str(DEFAULT_BENCH), metavar="PATH",
                    help="the aarch64 ghostfast-bench to push, built by `cmake --preset aarch64 && cmake --build "
                         "--preset aarch64` (default: %(default)s)")
    sp.add_argument("--device-dir", default=DEFAULT_DEVICE_DIR, metavar="DIR",
                    help="device folder for the binary and the model files (default: %(default)s)")
    sp.add_argument("--out", metavar="DIR", help="write report.md, results.csv, results.json and PNG plots here")
    sp.add_argument("--no-plots", action="store_true", help="with --out: tables only")
    sp.add_argument("--format", choices=report.FORMATS, default="md", help="what is printed (default: md)")
    sp.add_argument("--output", "-o", help="write to this file instead of stdout")
    sp.add_argument("--no-progress", action="store_true", help="no progress bar")
    sp.set_defaults(func=cmd_compare)

    add_eval_parser(sub)
    add_export_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = args.func(args)
    except (ValueError, TypeError, DeviceError) as e:
        print(f"ghostfast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if getattr(args, "output", None):
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text.rstrip("\n") + "\n")
    else:
        print(text.rstrip("\n"))
    return getattr(args, "exit_code", 0)


if __name__ == "__main__":
    sys.exit(main())
