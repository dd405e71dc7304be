"""The ghostfast command: list, profile, structure, bench, compare, eval, export."""
from __future__ import annotations

import argparse
import json
import sys
import warnings

from . import report
from .accuracy import BACKENDS as EVAL_BACKENDS
from .benchmark import BACKENDS, DEFAULT_BACKEND, DEFAULT_ITERS, PEER_BACKENDS
from .device import DEFAULT_BENCH, DEFAULT_DEVICE_DIR, DeviceError


# ghostfast.comparison.DEFAULT_BACKENDS, repeated so building the parser does not import torch.
DEFAULT_COMPARE_BACKENDS = ("native", "torch", "onnxruntime")

DESCRIPTION = ("Is GhostNet worth deploying instead of MobileNet, EfficientNet, MnasNet or ShuffleNet? Structure, "
               "size, accuracy and latency of mobile CNNs, measured one way on this machine.")
EPILOG = """examples:
  ghostfast list
  ghostfast bench ghostnet --iters 2000 --threads 1
  ghostfast compare --models ghostnet,mobilenetv3 --threads 1 --iters 20 --out report
  ghostfast compare --out ghostfast-report      # all 20 models: 3 minutes on 2 quiet cores, 15-20 busy
  ghostfast eval --data ~/imagenet/val --weights ghostnet_100.pth

`ghostfast COMMAND --help` describes each command's options."""
TORCH_HINT = ("install the CPU build of PyTorch: `pip install -c constraints-cpu.txt torch` in a ghostfast "
              "checkout, or `pip install torch --index-url https://download.pytorch.org/whl/cpu`")

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
              warmup=args.warmup, input_size=_input_size(args.input_size),
              progress=False if args.no_progress else None)
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


def add_weights_format_option(sp) -> None:
    """``--weights-format``, shared by the commands that load a checkpoint (eval, export)."""
    sp.add_argument("--weights-format", metavar="FORMAT",
                    help="force the checkpoint format, e.g. timm:tf_efficientnet_lite0 (default: detected from "
                         "the keys)")


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
    add_weights_format_option(sp)
    sp.add_argument("--seed", type=int, default=0,
                    help="seed of the zoo initialisation, the BN randomization and the input; 0 is what "
                         "`ghostfast compare` measures (default: %(default)s)")
    sp.add_argument("--out", required=True, metavar="DIR", help="folder to write the files into (created)")
    add_output_options(sp, formats=None)
    sp.set_defaults(func=cmd_export)


# ---- eval: ImageNet accuracy (ghostfast.accuracy) ---------------------------------------------------------------
def cmd_eval(args) -> str:
    from .accuracy import evaluate, save_result

    if args.weights is None and not args.random_weights:
        raise ValueError("no --weights: the model would be scored with random weights (top-1 about 0.1%). Give "
                         "the pretrained checkpoint with --weights FILE, or --random-weights to score the "
                         "untrained model anyway (a test of the pipeline, never a model's accuracy)")
    if args.weights is None:
        print("WARNING: --random-weights: scoring a randomly initialised model; its top-1 says nothing about the "
              "architecture and is stored as a partial run, never in place of the published figure",
              file=sys.stderr)
    overrides = {k: v for k, v in (("resize", args.resize), ("crop", args.crop),
                                   ("interpolation", args.interpolation)) if v is not None}
    with warnings.catch_warnings():  # the warning above says it already
        warnings.filterwarnings("ignore", message=r"evaluating .* with random weights")
        r = evaluate(args.model, args.data, weights=args.weights, backend=args.backend, limit=args.limit,
                     batch=args.batch, workers=args.workers, threads=args.threads, labels=args.labels,
                     preprocess=overrides or None, format=args.weights_format, progress=not args.no_progress)
    if not args.no_save:
        print(f"result saved to {save_result(r, args.results)}", file=sys.stderr)
    if not r.full_set:
        print(f"note: {r.set_label()}: recorded as partial; reports keep the published top-1", file=sys.stderr)
    if args.format == "json":
        return json.dumps(r.as_dict(), indent=2)
    return (report.render([r.row()], "md") + f"\n\n{r.images} images of {r.data} ({r.layout}; {r.set_label()}); "
            f"preprocessing: {r.preprocess['source']}")


def add_eval_parser(sub) -> None:
    sp = sub.add_parser("eval", help="ImageNet top-1 / top-5 of a model with pretrained weights, on any backend",
                        description="Score a model's pretrained weights on an ImageNet-1k validation folder with "
                                    "the preprocessing its publisher used. Only a run over the full validation set "
                                    "(50,000 images, 1,000 classes) stands in for the published top-1 in "
                                    "`ghostfast compare`; others are stored as partial.")
    sp.add_argument("--data", required=True, metavar="DIR",
                    help="validation folder: synset sub-folders, or images + a ground-truth file (required)")
    sp.add_argument("--model", help="zoo model name or alias (default: the model the --weights are for)")
    sp.add_argument("--weights", metavar="FILE",
                    help="checkpoint: .pth / .pt / .bin / .safetensors, read without unpickling code (no default: "
                         "required unless --random-weights)")
    sp.add_argument("--random-weights", action="store_true",
                    help="score the randomly initialised zoo model without --weights: tests the pipeline, never "
                         "a model's accuracy; stored as partial (default: refuse without --weights)")
    add_weights_format_option(sp)
    sp.add_argument("--backend", choices=EVAL_BACKENDS, default="torch",
                    help="runtime that computes the logits (default: %(default)s)")
    sp.add_argument("--labels", metavar="FILE",
                    help="ground-truth file of a flat folder (default: LOC_val_solution.csv or val.txt, found in "
                         "the folder or its parent)")
    sp.add_argument("--limit", type=int, metavar="N",
                    help="evaluate N images spread evenly over the set; the result is partial (default: all)")
    sp.add_argument("--batch", type=int, default=50, help="images per inference (default: %(default)s)")
    sp.add_argument("--workers", type=int, help="image decoding threads (default: min(8, CPUs); 0: none)")
    sp.add_argument("--threads", type=int, help="the backend's intra-op threads (default: the backend's own)")
    sp.add_argument("--resize", type=int, metavar="N",
                    help="override the checkpoint's resize of the shorter side (default: the checkpoint's)")
    sp.add_argument("--crop", type=int, metavar="N",
                    help="override the checkpoint's center-crop size (default: the checkpoint's)")
    sp.add_argument("--interpolation", choices=("bilinear", "bicubic", "nearest"),
                    help="override the resize filter (default: the checkpoint's)")
    sp.add_argument("--results", metavar="FILE",
                    help="results file to add to (default: $GHOSTFAST_ACCURACY_CACHE, else "
                         "~/.cache/ghostfast/accuracy.json)")
    sp.add_argument("--no-save", action="store_true", help="do not store the result (default: store it)")
    add_output_options(sp, formats=("md", "json"))
    sp.set_defaults(func=cmd_eval)


def add_output_options(sp, formats=report.FORMATS, default="md", progress: bool = True) -> None:
    """--format and --output (when ``formats``) and --no-progress (when ``progress``), alike on every command."""
    if formats:
        sp.add_argument("--format", choices=formats, default=default,
                        help="what is printed: %s (default: %%(default)s)" % ", ".join(formats))
        sp.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout (default: stdout)")
    if progress:
        sp.add_argument("--no-progress", action="store_true", help="no progress bar on stderr (default: a bar)")


def _model_arg(sp, optional: bool = False, what: str = "") -> None:
    if optional:
        sp.add_argument("model", nargs="?", help=f"zoo model name or alias, e.g. ghostnet, mobilenetv3{what}")
    else:
        sp.add_argument("model", help=f"zoo model name or alias, e.g. ghostnet, mobilenetv3{what}")


def _input_size_arg(sp) -> None:
    sp.add_argument("--input-size", type=int, nargs="+", metavar="N",
                    help="input H, or H W (default: the model's own, 224 for most)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ghostfast", description=DESCRIPTION, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND",
                           title="commands (each needs PyTorch)")

    sp = sub.add_parser("list", help="zoo models with family, input size, canonical source and aliases",
                        description="The 20 zoo models: family, input size, canonical implementation, aliases.")
    add_output_options(sp, progress=False)
    sp.set_defaults(func=cmd_list)

    sp = sub.add_parser("profile", help="params, MACs, bytes and the per-layer table of one model",
                        description="Parameters, MACs (conv + linear, and a labeled total), weight and activation "
                                    "bytes of one model; --layers adds the per-layer table.")
    _model_arg(sp)
    _input_size_arg(sp)
    sp.add_argument("--layers", action="store_true", help="also print the per-layer table (default: summary only)")
    add_output_options(sp, formats=("text", *report.FORMATS), default="text", progress=False)
    sp.set_defaults(func=cmd_profile)

    sp = sub.add_parser("structure", help="the stage table of one model, or the summary of all models",
                        description="The stage table the papers print, derived from the modules; without a model, "
                                    "the side-by-side summary of the zoo.")
    _model_arg(sp, optional=True, what=" (default: the summary of all models)")
    _input_size_arg(sp)
    add_output_options(sp, formats=("text", *report.FORMATS), progress=False)
    sp.set_defaults(func=cmd_structure)

    sp = sub.add_parser("bench", help="latency of one model on one backend",
                        description="Time one model on one backend with the C++ timing loop: median, mean, p10, "
                                    "p90, p99 and std of --iters iterations after --warmup untimed ones. A run "
                                    "expected to take over 2 s shows a progress bar.")
    _model_arg(sp)
    sp.add_argument("--iters", type=int, default=DEFAULT_ITERS, help="timed iterations (default: %(default)s)")
    sp.add_argument("--warmup", type=int, default=None,
                    help="untimed iterations first (default: 10%% of --iters, at least 5, at most 500)")
    sp.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND, metavar="BACKEND",
                    help="runtime to time: %s (default: %%(default)s, ghostfast's engine; openvino, litert, ncnn "
                         "and mnn need the peers extra)" % ", ".join(BACKENDS))
    sp.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for this run (default: the backend's own; native: 1)")
    sp.add_argument("--batch", type=int, default=1, help="batch size (default: %(default)s)")
    _input_size_arg(sp)
    sp.add_argument("--samples", action="store_true",
                    help="include the raw per-iteration samples in the JSON (default: statistics only)")
    add_output_options(sp, formats=("text", "json"), default="text")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("compare", help="every model on every backend, measured the same way: tables and plots",
                        description="Time zoo models on several backends interleaved (A B C A B C ...) at each "
                                    "thread count; print the tables, or write report.md, results.csv, "
                                    "results.json and PNG plots with --out DIR. The defaults (20 models x 3 "
                                    "backends x 2 thread counts) take about 3 minutes on 2 quiet cores and 15-20 "
                                    "on busy ones; --models, --threads and --iters make it shorter.")
    sp.add_argument("--models", help="comma-separated names or aliases (default: the whole zoo, 20 models)")
    sp.add_argument("--backends", default=",".join(DEFAULT_COMPARE_BACKENDS),
                    help="comma-separated backends run on this machine, of %s (default: %%(default)s); the peer "
                         "runtimes %s need `pip install -c constraints-cpu.txt '.[peers]'` and the report then names "
                         "the fastest peer per model; they run with --device too, in the same report: give `none` to "
                         "run the device alone" % (", ".join(BACKENDS), ", ".join(PEER_BACKENDS)))
    sp.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="intra-op thread counts, one cell each (default: 1 2)")
    sp.add_argument("--batch", type=int, nargs="+", default=[1], help="batch sizes, one cell each (default: 1)")
    sp.add_argument("--iters", type=int, default=50, help="timed iterations per cell (default: %(default)s)")
    sp.add_argument("--rounds", type=int, default=5, help="interleaved rounds the iterations are split into "
                                                          "(default: %(default)s)")
    sp.add_argument("--warmup", type=int, default=None, help="untimed iterations before each round (default: 2)")
    sp.add_argument("--baseline", default=None, metavar="BACKEND",
                    help="backend the ratios divide by (default: onnxruntime if compared, else the first backend)")
    sp.add_argument("--no-check", action="store_true",
                    help="skip the output check against torch (default: check every backend before timing it)")
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
    sp.add_argument("--out", metavar="DIR",
                    help="write report.md, results.csv, results.json and PNG plots here (default: print only)")
    sp.add_argument("--no-plots", action="store_true", help="with --out: tables only (default: tables and plots)")
    add_output_options(sp)
    sp.set_defaults(func=cmd_compare)

    add_eval_parser(sub)
    add_export_parser(sub)
    return p


def _missing_torch(e: ImportError) -> bool:
    return (e.name or "").split(".")[0] == "torch"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = args.func(args)
    except (ValueError, TypeError, DeviceError) as e:
        print(f"ghostfast {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        if not _missing_torch(e):
            raise
        print(f"ghostfast {args.command}: error: this command needs PyTorch, which is not installed: {TORCH_HINT}",
              file=sys.stderr)
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
