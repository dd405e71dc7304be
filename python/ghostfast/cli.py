"""The ``ghostfast`` command: list, profile, structure, bench, compare."""
from __future__ import annotations

import argparse
import json
import sys

from . import env, report


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
    from .comparison import compare

    records = compare(models=_csv_list(args.models) if args.models else None, backends=_csv_list(args.backends),
                      threads=args.threads, batch=args.batch, iters=args.iters, warmup=args.warmup,
                      progress=not args.no_progress)
    if records and records[0].get("interrupted"):
        print("interrupted: showing what was measured before Ctrl-C", file=sys.stderr)
    environment = env.describe()
    if args.format == "md":
        text = report.render(records, "md", columns=report.COMPARE_COLUMNS)
        text += (f"\n\nbatch-1 latency, median of {args.iters} iterations; top-1 is the published figure "
                 f"(source in the JSON/CSV). {environment['cpu']} [{' '.join(environment['isa'])}], "
                 + ", ".join(f"{k} {v}" for k, v in environment["versions"].items()))
    else:
        text = report.render(records, args.format, environment=environment)
    return text


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

    sp = sub.add_parser("compare", help="one table of every model: params, MACs, weight bytes, latency")
    sp.add_argument("--models", help="comma-separated names (default: the whole zoo)")
    sp.add_argument("--backends", default="torch", help="comma-separated backends (default: torch)")
    sp.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    sp.add_argument("--batch", type=int, nargs="+", default=[1])
    sp.add_argument("--iters", type=int, default=50)
    sp.add_argument("--warmup", type=int, default=None)
    sp.add_argument("--format", choices=report.FORMATS, default="md")
    sp.add_argument("--output", "-o", help="write to this file instead of stdout")
    sp.add_argument("--no-progress", action="store_true")
    sp.set_defaults(func=cmd_compare)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        text = args.func(args)
    except (ValueError, TypeError) as e:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
