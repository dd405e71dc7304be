"""The comparison a user reads: Markdown tables of a :func:`ghostfast.compare` run, and the ``--out`` folder.

``write_report(result, out_dir)`` writes report.md, results.csv, results.json and the PNG plots; the same
Markdown tables (without plots) are what ``ghostfast compare`` prints.
"""
from __future__ import annotations

import math
from pathlib import Path

from . import report
from .benchmark import PEER_BACKENDS

# The backend the best-peer table measures against its peers.
NATIVE = "native"

PLOT_FILES = {"latency_vs_macs": "latency_vs_macs.png", "top1_vs_latency": "top1_vs_latency.png",
              "op_breakdown": "op_breakdown.png"}


def _md(rows: list[list], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _index(records) -> dict:
    return {(r["model"], r["backend"], r["threads"], r["batch"]): r for r in records}


def _axes(records):
    models = list(dict.fromkeys(r["model"] for r in records))
    backends = list(dict.fromkeys(r["backend"] for r in records))
    threads = sorted({r["threads"] for r in records})
    batches = sorted({r["batch"] for r in records})
    return models, backends, threads, batches


def _first(idx, model, batch):
    return next(r for (m, _, _, b), r in idx.items() if m == model and b == batch)


def _geomean(values) -> float | None:
    values = [v for v in values if v]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


# A cell whose slowest round median is this many times its fastest was measured while the machine's speed
# moved; it is marked so a reader discounts it (or reruns with more iterations).
DRIFT_FLAG = 1.5


# More threads making a backend this much slower than its fewest-threads run usually means the cores were busy
# with other work (spinning thread pools degrade badly when a core is taken away), not a property of the backend.
CONTENTION_FLAG = 1.5


def _latency_cell(r, fewest=None) -> str:
    """ "median (ratio)" with † for drift during the cell and ‡ for slower-with-more-threads than ``fewest``."""
    if r is None:
        return "-"
    if r["status"] != "ok":
        return r["status"]
    ratio = r.get("ratio_to_baseline")
    mark = " †" if (r.get("round_drift") or 1.0) > DRIFT_FLAG else ""
    if _contended(r, fewest):
        mark += " ‡"
    return f"{r['median_ms']:.2f}" + (f" ({ratio:.2f}x)" if ratio is not None else "") + mark


def _contended(r, fewest) -> bool:
    return (fewest is not None and fewest is not r and fewest.get("median_ms") is not None
            and r["threads"] > fewest["threads"] and r["median_ms"] > CONTENTION_FLAG * fewest["median_ms"])


def latency_tables(records, settings: dict | None = None) -> str:
    """One table per batch and thread count: model, size, top-1, then median ms (ratio) per backend."""
    idx = _index(records)
    models, backends, threads, batches = _axes(records)
    base = (settings or {}).get("baseline") or next((r["baseline"] for r in records if r.get("baseline")), None)
    parts = []
    for bs in batches:
        for t in threads:
            rows = []
            for m in models:
                info = _first(idx, m, bs)
                top1 = "-" if info["top1"] is None else f"{info['top1']:.1f}"
                if info.get("top1_measured") is not None:  # a full validation-set run of `ghostfast eval`
                    top1 += " (measured)"
                rows.append([m, f"{info['params'] / 1e6:.2f}", f"{info['macs'] / 1e6:.0f}", top1]
                            + [_latency_cell(idx.get((m, b, t, bs)), idx.get((m, b, threads[0], bs)))
                               for b in backends])
            title = f"### Median latency (ms), batch {bs}, {t} thread{'s' if t > 1 else ''}"
            if base:
                title += f" — in brackets: x {base}"
            parts.append(title + "\n\n" + _md(rows, ["model", "params (M)", "MACs (M)", "top-1 (%)", *backends]))
    notes = []
    if (settings or {}).get("device"):
        notes.append(f"{settings['device']}: the device's rows (see Environment), timed there by ghostfast-bench in "
                     f"one run of the cell's iterations; no ratio, since it is another machine than the baseline's.")
    if any((r.get("round_drift") or 1.0) > DRIFT_FLAG for r in records if r["status"] == "ok"):
        notes.append(f"† the slowest round's median was more than {DRIFT_FLAG}x the fastest's: the machine's "
                     f"speed moved during this cell; trust its ratio less, or rerun with more --iters.")
    if any(_contended(r, idx.get((r["model"], r["backend"], threads[0], r["batch"])))
           for r in records if r["status"] == "ok"):
        notes.append(f"‡ more than {CONTENTION_FLAG}x slower than the same backend on {threads[0]} thread"
                     f"{'s' if threads[0] > 1 else ''}: the cores were most likely busy with other work "
                     f"(check the load averages below) and the cell is not a property of the backend.")
    return "\n\n".join(parts + notes)


def ratio_table(records, settings: dict | None = None) -> str:
    """Ratio to the baseline per model and backend x threads, with the geometric mean over models."""
    idx = _index(records)
    models, backends, threads, batches = _axes(records)
    base = (settings or {}).get("baseline") or next((r["baseline"] for r in records if r.get("baseline")), None)
    if not base:
        return ""
    device = (settings or {}).get("device")  # another machine: it has no ratio to the host's baseline
    cols = [(b, t, bs) for bs in batches for b in backends if b not in (base, device) for t in threads]
    if not cols:
        return ""
    headers = ["model"] + [f"{b} {t}t" + (f" b{bs}" if len(batches) > 1 else "") for b, t, bs in cols]
    rows, per_col = [], {c: [] for c in cols}
    for m in models:
        row = [m]
        for b, t, bs in cols:
            r = idx.get((m, b, t, bs))
            v = r.get("ratio_to_baseline") if r else None
            row.append("-" if v is None else f"{v:.2f}")
            if v is not None:
                per_col[(b, t, bs)].append(v)
        rows.append(row)
    geo = [_geomean(per_col[c]) for c in cols]
    rows.append(["**geomean**"] + ["-" if g is None else f"**{g:.2f}**" for g in geo])
    return (f"### Ratio to {base} (median / {base} median, same interleaved run; < 1 = faster than {base})\n\n"
            + _md(rows, headers))


def best_peers(records, peers=PEER_BACKENDS, native: str = NATIVE) -> list[dict]:
    """Per batch, thread count and model: native's median, the fastest peer runtime with an ``ok`` record there
    (ties go to the earlier name in ``peers``) and native / that peer. Empty when no peer was compared."""
    idx = _index(records)
    models, backends, threads, batches = _axes(records)
    compared = [b for b in peers if b in backends]
    if not compared:
        return []
    rows = []
    for bs in batches:
        for t in threads:
            for m in models:
                ok = [r for b in compared if (r := idx.get((m, b, t, bs))) is not None
                      and r["status"] == "ok" and r.get("median_ms")]
                best = min(ok, key=lambda r: r["median_ms"], default=None)
                nat = idx.get((m, native, t, bs))
                nat_ms = nat["median_ms"] if nat is not None and nat["status"] == "ok" else None
                peer_ms = best["median_ms"] if best is not None else None
                rows.append({"model": m, "threads": t, "batch": bs, "native_ms": nat_ms,
                             "native_status": None if nat is None else nat["status"],
                             "best_peer": None if best is None else best["backend"], "peer_ms": peer_ms,
                             "native_over_peer": nat_ms / peer_ms if nat_ms and peer_ms else None,
                             "peers_ok": len(ok), "peers_compared": len(compared)})
    return rows


def best_peer_table(records, peers=PEER_BACKENDS, native: str = NATIVE) -> str:
    """Native against the fastest peer runtime per model and thread count, with the geometric mean of
    native / peer per thread count (and batch); empty when no peer runtime was compared."""
    rows = best_peers(records, peers, native)
    if not rows:
        return ""
    several_batches = len({r["batch"] for r in rows}) > 1
    headers = ["model", "threads", *(["batch"] if several_batches else []), f"{native} ms", "best peer",
               "peer ms", f"{native} / peer", "peers timed"]
    lines = []
    groups: dict[tuple, list] = {}
    for r in rows:
        groups.setdefault((r["batch"], r["threads"]), []).append(r)
    for (bs, t), group in groups.items():
        for r in group:
            nat = (f"{r['native_ms']:.2f}" if r["native_ms"] is not None
                   else (r["native_status"] or "-"))
            ratio = r["native_over_peer"]
            lines.append([r["model"], t, *([bs] if several_batches else []), nat, r["best_peer"] or "-",
                          "-" if r["peer_ms"] is None else f"{r['peer_ms']:.2f}",
                          "-" if ratio is None else f"{ratio:.2f}", f"{r['peers_ok']}/{r['peers_compared']}"])
        geo = _geomean([r["native_over_peer"] for r in group])
        lines.append(["**geomean**", t, *([bs] if several_batches else []), "", "", "",
                      "-" if geo is None else f"**{geo:.2f}**", ""])
    compared = [b for b in peers if any(r["backend"] == b for r in records)]
    return (f"### {native} against the best peer runtime (fastest ok of {', '.join(compared)} per model and thread "
            f"count; {native} / peer < 1 = {native} faster)\n\n" + _md(lines, headers))


def ms_per_gmac_table(records) -> str:
    """Milliseconds per billion MACs: equal values mean latency tracks MACs; higher = each MAC costs more."""
    idx = _index(records)
    models, backends, threads, batches = _axes(records)
    cols = [(b, t, bs) for bs in batches for b in backends for t in threads]
    headers = ["model", "MACs (M)"] + [f"{b} {t}t" + (f" b{bs}" if len(batches) > 1 else "") for b, t, bs in cols]
    rows = []
    for m in models:
        info = _first(idx, m, batches[0])
        row = [m, f"{info['macs'] / 1e6:.0f}"]
        for c in cols:
            r = idx.get((m, *c))
            row.append("-" if r is None or r.get("ms_per_gmac") is None else f"{r['ms_per_gmac']:.1f}")
        rows.append(row)
    return ("### ms per GMAC (median ms / billions of MACs; lower = the runtime turns MACs into time better)\n\n"
            + _md(rows, headers))


def checks_table(records) -> str:
    """Per backend and thread count: how many outputs were checked against torch, the worst error, top-1."""
    rows = []
    groups: dict[tuple, list] = {}
    for r in records:
        groups.setdefault((r["backend"], r["threads"]), []).append(r)
    for (b, t), rs in groups.items():
        checked = [r for r in rs if r.get("check_max_rel_err") is not None]
        if not checked:
            continue
        worst = max(r["check_max_rel_err"] for r in checked)
        agree = sum(r["check_top1_agree"] for r in checked) / len(checked)
        failed = [r["model"] for r in checked if not r.get("check_ok")]
        rows.append([b, t, len(checked), f"{worst:.1e}", f"{100 * agree:.0f}%", ", ".join(failed) or "none"])
    if not rows:
        return ""
    return ("### Output check against torch eager (before timing; BN statistics randomized)\n\n"
            + _md(rows, ["backend", "threads", "models checked", "worst max rel. error", "top-1 agreement",
                         "failed"]))


def problems(records) -> str:
    """Skipped, failed and mismatching backends, one line per distinct reason."""
    seen: dict[tuple, list] = {}
    for r in records:
        if r["status"] != "ok":
            seen.setdefault((r["backend"], r["status"], r["reason"]), []).append(f"{r['model']}@{r['threads']}t")
    if not seen:
        return ""
    lines = []
    for (b, status, reason), where in seen.items():
        scope = "all runs" if len(where) == sum(1 for r in records if r["backend"] == b) else ", ".join(where)
        lines.append(f"- **{b}** {status} ({scope}): {reason}")
    return "### Not timed\n\n" + "\n".join(lines)


def environment_lines(environment: dict, settings: dict | None = None, wall_s: float | None = None) -> str:
    e, s = environment or {}, settings or {}
    versions = ", ".join(f"{k} {v}" for k, v in e.get("versions", {}).items())
    lines = [
        f"- CPU: {e.get('cpu', '?')} ({e.get('machine', '?')}, {e.get('logical_cpus', '?')} logical CPUs), "
        f"{e.get('os', '?')}",
        f"- ISA features: {' '.join(e.get('isa', [])) or '?'}",
        f"- libraries: {versions}",
        f"- date: {e.get('date', '?')}; command: `{e.get('command', '?')}`",
    ]
    if e.get("backends"):
        lines.append("- backends: " + "; ".join(f"{b}: {desc or '?'}" for b, desc in e["backends"].items()))
    d = e.get("device")
    if d:
        cores = f", {d['cores']} cores" if d.get("cores") else ""
        maker, model = d.get("manufacturer") or "", d.get("model") or "?"
        name = model if model.lower().startswith(maker.lower()) else f"{maker} {model}"  # "Google Pixel 7"
        lines.append(f"- device ({d.get('backend')}): {name}"
                     f", SoC {d.get('soc') or '?'}, CPU {d.get('cpu') or d.get('bench_cpu') or '?'}{cores}, "
                     f"{d.get('machine') or '?'} / ABI {d.get('abi') or '?'}, Android {d.get('android') or '?'}; "
                     f"engine kernels {', '.join(d.get('engine_isa') or []) or '?'}; adb serial {d.get('serial')}")
    if e.get("load_average_start") is not None:
        lines.append(f"- load average (1 / 5 / 15 min) at start {_loads(e['load_average_start'])}, at end "
                     f"{_loads(e.get('load_average_end'))} (above 0.5 per core: other work shared the CPUs)")
    if s:
        lines.append(f"- settings: threads {s.get('threads')}, batch {s.get('batch')}, {s.get('iters')} timed "
                     f"iterations per cell in {s.get('rounds')} interleaved rounds, {s.get('warmup')} warm-up "
                     f"iterations per round, baseline {s.get('baseline')}, seed {s.get('seed')}")
    if wall_s is not None:
        lines.append(f"- run time: {wall_s:.0f} s")
    return "\n".join(lines)


def _loads(values) -> str:
    return "?" if not values else " / ".join(f"{v:.2f}" for v in values)


def breakdown_table(profiles: dict[str, dict]) -> str:
    """Time (ms and share) and, when attributed, MAC share per op type, one column pair per model."""
    types = sorted({t for p in profiles.values() for t in p["by_type"]},
                   key=lambda t: -sum(p["by_type"].get(t, 0.0) for p in profiles.values()))
    headers = ["op type"]
    for m, p in profiles.items():
        headers.append(f"{m} ms (share)")
        if "by_type_macs" in p:
            headers.append(f"{m} MAC share")
    rows = []
    for t in types:
        row = [t]
        for p in profiles.values():
            us = p["by_type"].get(t, 0.0)
            row.append(f"{us / 1e3:.3f} ({100 * us / p['total_us']:.0f}%)" if us else "-")
            if "by_type_macs" in p:
                macs, total = p["by_type_macs"].get(t, 0), sum(p["by_type_macs"].values()) or 1
                row.append(f"{100 * macs / total:.0f}%" if macs else "-")
        rows.append(row)
    total_row = ["**total**"]
    for p in profiles.values():
        total_row.append(f"**{p['total_us'] / 1e3:.3f}**")
        if "by_type_macs" in p:
            total_row.append(f"**{sum(p['by_type_macs'].values()) / 1e6:.0f} M**")
    rows.append(total_row)
    return _md(rows, headers)


HOW_TO_READ = """\
How to read this: every cell is the median of the timed iterations of one backend; backends were timed in
interleaved rounds (A B C A B C ...) on the same input, threads and batch, so the ratio in brackets (median /
baseline median from the same run) holds even when the machine's speed drifts. Ratios below 1 are faster than
the baseline. Absolute milliseconds on a shared machine move by tens of percent between runs; the ratios move
much less. p10 / p90, the per-round drift (slowest / fastest round median) and the output checks are in
results.csv and results.json. Top-1 is the published figure unless `ghostfast eval` measured the model on the
full validation set (50,000 images, 1,000 classes, pretrained weights); partial runs never replace it (source per
row in the CSV)."""


def summary_markdown(result) -> str:
    """The tables ``ghostfast compare`` prints: latency with ratios, not-timed reasons, environment."""
    records = list(result)
    settings = getattr(result, "settings", {})
    parts = [latency_tables(records, settings), best_peer_table(records)] if records else ["(no records)"]
    parts += [problems(records), HOW_TO_READ.replace("\n", " "),
              environment_lines(getattr(result, "environment", {}), settings, getattr(result, "wall_s", None))]
    if getattr(result, "interrupted", False):
        parts.insert(0, "**Interrupted (Ctrl-C): the tables hold what was measured before.**")
    return "\n\n".join(p for p in parts if p)


def full_markdown(result, plots: dict[str, str] | None = None, breakdown: dict[str, dict] | None = None,
                  breakdown_threads: int = 1, breakdown_note: str | None = None) -> str:
    """report.md: the latency tables, ratios, ms/GMAC, checks, breakdown, plots, all records, environment."""
    records = list(result)
    settings = getattr(result, "settings", {})
    plots = plots or {}
    parts = ["# ghostfast compare"]
    s = settings or {}
    if s:
        wall = getattr(result, "wall_s", None)
        backends = [*s.get("backends", []), *([s["device"]] if s.get("device") else [])]
        parts.append(f"{len(s.get('models', []))} models x {', '.join(backends)} x threads "
                     f"{s.get('threads')} x batch {s.get('batch')}; {s.get('iters')} timed iterations per cell in "
                     f"{s.get('rounds')} interleaved rounds; baseline {s.get('baseline')}"
                     + (f"; {wall:.0f} s." if wall is not None else "."))
    if getattr(result, "interrupted", False):
        parts.append("**Interrupted (Ctrl-C): the tables hold what was measured before.**")
    parts.append(HOW_TO_READ)
    if records:
        parts += [latency_tables(records, settings), ratio_table(records, settings), best_peer_table(records),
                  ms_per_gmac_table(records), checks_table(records)]
    parts.append(problems(records))
    if "latency_vs_macs" in plots:
        parts.append(f"### Latency against MACs\n\n![latency vs MACs]({plots['latency_vs_macs']})")
    if "top1_vs_latency" in plots:
        parts.append(f"### Published top-1 against latency (Pareto front ringed)\n\n"
                     f"![top-1 vs latency]({plots['top1_vs_latency']})")
    if breakdown:
        section = (f"### Time per op type, native engine, {breakdown_threads} thread"
                   f"{'s' if breakdown_threads > 1 else ''} (Engine.profile)\n\n" + breakdown_table(breakdown))
        if "op_breakdown" in plots:
            section += f"\n\n![op breakdown]({plots['op_breakdown']})"
        parts.append(section)
    elif breakdown_note:
        parts.append(f"### Time per op type\n\nnot measured: {breakdown_note}")
    if records:
        parts.append("### All records\n\n" + report.to_markdown(records, report.COMPARE_COLUMNS))
    parts.append("### Environment\n\n" + environment_lines(getattr(result, "environment", {}), settings,
                                                         getattr(result, "wall_s", None)))
    return "\n\n".join(p for p in parts if p) + "\n"


def write_report(result, out_dir, plots: bool = True, breakdown: dict[str, dict] | None = None,
                 breakdown_threads: int = 1, breakdown_note: str | None = None) -> list[Path]:
    """Write report.md, results.csv, results.json and (``plots=True``) the PNGs into ``out_dir``.

    ``breakdown``: ``{model: Engine.profile() result}`` for the per-op-type plot and table (see
    :func:`ghostfast.comparison.op_breakdown`). Returns the paths written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = list(result)
    written = []
    extra = {"settings": getattr(result, "settings", {}), "interrupted": getattr(result, "interrupted", False),
             "wall_s": getattr(result, "wall_s", None)}
    if breakdown:
        extra["op_breakdown"] = {m: {"threads": breakdown_threads, **p} for m, p in breakdown.items()}
    for name, text in (("results.csv", report.to_csv(records)),
                       ("results.json", report.to_json(records, getattr(result, "environment", {}), **extra))):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    plot_files: dict[str, str] = {}
    if plots:
        from . import plots as plotting

        written.append(plotting.latency_vs_macs(records, out / PLOT_FILES["latency_vs_macs"]))
        written.append(plotting.top1_vs_latency(records, out / PLOT_FILES["top1_vs_latency"]))
        plot_files.update({k: PLOT_FILES[k] for k in ("latency_vs_macs", "top1_vs_latency")})
        if breakdown:
            written.append(plotting.op_breakdown(breakdown, out / PLOT_FILES["op_breakdown"], breakdown_threads))
            plot_files["op_breakdown"] = PLOT_FILES["op_breakdown"]
    md = full_markdown(result, plot_files, breakdown, breakdown_threads, breakdown_note)
    (out / "report.md").write_text(md, encoding="utf-8")
    return [out / "report.md", *written]
