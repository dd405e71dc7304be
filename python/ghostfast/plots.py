"""PNG plots of a comparison (matplotlib, Agg backend: no display needed).

- :func:`latency_vs_macs`: median latency against MACs, one panel per thread count, one colour per backend.
  On a runtime whose latency tracked MACs the points would sit on one line per backend; GhostNet sitting above
  MobileNetV3's line is the FLOPs-versus-latency gap.
- :func:`top1_vs_latency`: published top-1 against latency, one panel per backend, Pareto front marked.
- :func:`op_breakdown`: time per op type of some models from the native engine's profiler, side by side.

Point labels are placed by adjustText (the ``plot`` extra), which moves them apart from each other and from the
points, with a leader line to a moved label's point, so that every model's name stays readable in the dense
low-latency corner. ``*_figure`` functions return the figure (tests measure the labels), the others save a PNG.
"""
from __future__ import annotations

from pathlib import Path

# Short point labels: "GN1.0" for ghostnet_100, "MNv3-L" for mobilenet_v3_large, ...
_PREFIXES = (("ghostnet_", "GN"), ("mobilenet_v3_", "MNv3-"), ("mobilenet_v", "MNv"), ("mnasnet_", "Mnas-"),
             ("shufflenet_v1_", "SNv1-"), ("shufflenet_v2_x", "SNv2-"), ("efficientnet_", "EN-"))
_WIDTHS = {"050": "0.5", "100": "1.0", "130": "1.3", "0_5": "0.5", "1_0": "1.0", "1_5": "1.5", "2_0": "2.0"}


def _plt():
    try:
        import adjustText  # noqa: F401  (label placement; checked here so a missing one fails before any work)
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib and adjustText: pip install 'ghostfast[plot]' (or: pip install "
                          "matplotlib adjustText)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


LABEL_FONTSIZE = 7


def _place_labels(ax, points, colours=None, avoid=()) -> list:
    """One text per ``(x, y, label)`` of ``points``, moved by adjustText away from each other and from the points
    (and the ``(x, y)`` of ``avoid``), a grey leader line to a moved label's point; returns the texts.

    Call after everything that changes the axes' limits or scales. The texts are marked ``gid="point-label"``.
    """
    from adjustText import adjust_text

    texts = [ax.text(x, y, label, fontsize=LABEL_FONTSIZE, gid="point-label", zorder=5,
                     color=(colours[i] if colours else "black"))
             for i, (x, y, label) in enumerate(points)]
    xy = [(p[0], p[1]) for p in points] + list(avoid)
    # adjustText stops when it has no overlap left or at its iteration limit: a rare crowded panel gets further
    # passes with more room around each label, from where the last one left the labels.
    for attempt, expand in enumerate(((1.2, 1.6), (1.35, 1.9), (1.5, 2.2))):
        if attempt and not _overlapping(ax, texts):
            break
        adjust_text(texts, x=[p[0] for p in xy], y=[p[1] for p in xy], ax=ax, expand=expand,
                    force_text=(0.3, 0.6), force_static=(0.2, 0.4), ensure_inside_axes=True, max_move=(20, 20),
                    iter_lim=2000, arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.5})
    return texts


def label_boxes(ax, draw: bool = True) -> list:
    """(text, display bbox) of the point labels of ``ax``; ``draw`` draws the figure first, as saving does."""
    fig = ax.figure
    if draw:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in ax.texts if t.get_gid() == "point-label"]


def _overlapping(ax, texts) -> bool:
    boxes = [b for _, b in label_boxes(ax, draw=False)] if texts else []
    return any(boxes[i].overlaps(boxes[j]) for i in range(len(boxes)) for j in range(i))


def _label(model: str) -> str:
    for prefix, short in _PREFIXES:
        if model.startswith(prefix):
            rest = model[len(prefix):]
            rest = {"large": "L", "small": "S"}.get(rest, rest)
            for long, width in _WIDTHS.items():
                if rest == long or rest.endswith("_" + long):
                    rest = rest[: len(rest) - len(long)] + width
            return short + rest.replace("_", " ").upper().replace("LITE", "lite")
    return model


def _ok(records):
    return [r for r in records if r.get("status", "ok") == "ok" and r.get("median_ms") is not None]


def _save(fig, path, what: str = "") -> Path:
    """Write ``fig`` to ``path`` as PNG; ``fig`` None writes a "no timed records for ``what``" note instead."""
    import matplotlib.pyplot as plt

    if fig is None:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.axis("off")
        ax.text(0.5, 0.5, f"no timed records for {what}", ha="center", va="center")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def latency_vs_macs(records, path, batch: int = 1) -> Path:
    """Median latency (ms) against MACs (M) per backend, one panel per thread count."""
    return _save(latency_vs_macs_figure(records, batch), path, "latency vs MACs")


def latency_vs_macs_figure(records, batch: int = 1):
    """The figure of :func:`latency_vs_macs` (None without timed records). Each model's backends share its MACs:
    a thin grey line joins them and one label names the model."""
    plt = _plt()
    from matplotlib import ticker

    recs = [r for r in _ok(records) if r["batch"] == batch]
    if not recs:
        return None
    threads = sorted({r["threads"] for r in recs})
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    colours = {b: plt.get_cmap("tab10")(i % 10) for i, b in enumerate(backends)}
    fig, axes = plt.subplots(1, len(threads), figsize=(7.5 * len(threads), 6.5), squeeze=False, sharey=True)
    columns = []
    for ax, t in zip(axes[0], threads):
        by_model: dict[str, list[tuple[float, float]]] = {}
        for b in backends:
            pts = sorted((r["macs"] / 1e6, r["median_ms"], r["model"]) for r in recs
                         if r["backend"] == b and r["threads"] == t)
            if not pts:
                continue
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], color=colours[b], label=b, s=22, zorder=3)
            for mac, ms, model in pts:
                by_model.setdefault(model, []).append((mac, ms))
            # The backend's typical cost per MAC (median of ms / MMAC) as a line: latency = k x MACs.
            k = sorted(p[1] / p[0] for p in pts)[len(pts) // 2]
            xs = [pts[0][0] * 0.9, pts[-1][0] * 1.1]
            ax.plot(xs, [k * x for x in xs], "--", color=colours[b], lw=0.8, alpha=0.7, zorder=2)
        for model, pts in by_model.items():
            if len(pts) > 1:
                ax.plot([pts[0][0]] * 2, [min(p[1] for p in pts), max(p[1] for p in pts)], "-", color="0.75",
                        lw=0.8, zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):  # plain numbers (50, 100, 200) instead of 5x10^1 on log axes
            axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}" if str(v)[0] in "25" else ""))
        ax.set_title(f"{t} thread{'s' if t > 1 else ''}, batch {batch}")
        ax.set_xlabel("MACs (M, conv + linear), log scale")
        ax.grid(True, which="both", alpha=0.3)
        ax.margins(x=0.06, y=0.08)  # room for the labels of the points at the edges
        # One label per model, at its fastest backend's point; the other backends' points are avoided too.
        columns.append((ax, [(pts[0][0], min(p[1] for p in pts), _label(m)) for m, pts in by_model.items()],
                        [p for pts in by_model.values() for p in pts]))
    axes[0][0].set_ylabel("median latency (ms), log scale")
    axes[0][-1].legend(title="backend", fontsize=8, loc="upper left")
    fig.suptitle("Latency against MACs; dashed: the backend's median ms per MAC. "
                 "Points above their line run slower than their MACs suggest")
    fig.tight_layout()
    for ax, points, avoid in columns:  # after the layout: adjustText works in display coordinates
        _place_labels(ax, points, avoid=avoid)
    return fig


def pareto_front(points):
    """Indices of the (latency, top-1) points no other point beats on both (lower latency, higher top-1)."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], float("-inf")
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def top1_vs_latency(records, path, threads: int | None = None, batch: int = 1) -> Path:
    """Published top-1 against median latency, one panel per backend, the Pareto front joined and ringed."""
    return _save(top1_vs_latency_figure(records, threads, batch), path, "top-1 vs latency")


def top1_vs_latency_figure(records, threads: int | None = None, batch: int = 1):
    """The figure of :func:`top1_vs_latency` (None without timed records with a published top-1)."""
    plt = _plt()
    recs = [r for r in _ok(records) if r["batch"] == batch and r.get("top1_published") is not None]
    if threads is None and recs:
        threads = min(r["threads"] for r in recs)
    recs = [r for r in recs if r["threads"] == threads]
    if not recs:
        return None
    backends = list(dict.fromkeys(r["backend"] for r in recs))
    fig, axes = plt.subplots(1, len(backends), figsize=(6.5 * len(backends), 6.5), squeeze=False, sharey=True)
    panels = []
    for ax, b in zip(axes[0], backends):
        rows = [r for r in recs if r["backend"] == b]
        pts = [(r["median_ms"], r["top1_published"]) for r in rows]
        ghost = [r["model"].startswith("ghostnet") for r in rows]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=22, zorder=3,
                   c=["tab:red" if g else "tab:blue" for g in ghost])
        front = pareto_front(pts)
        ax.plot([pts[i][0] for i in front], [pts[i][1] for i in front], "-", color="tab:green", lw=1.2,
                drawstyle="steps-post", label="Pareto front", zorder=2)
        ax.scatter([pts[i][0] for i in front], [pts[i][1] for i in front], s=90, facecolors="none",
                   edgecolors="tab:green", zorder=4)
        ax.set_title(f"{b}, {threads} thread{'s' if threads > 1 else ''}")
        ax.set_xlabel("median latency (ms)")
        ax.grid(True, alpha=0.3)
        ax.margins(x=0.08, y=0.08)  # room for the labels of the points at the edges
        ax.legend(fontsize=8, loc="lower right")
        panels.append((ax, [(ms, top1, _label(r["model"])) for (ms, top1), r in zip(pts, rows)],
                       ["tab:red" if g else "black" for g in ghost]))
    axes[0][0].set_ylabel("published ImageNet top-1 (%)")
    fig.suptitle("Published top-1 against measured latency (GhostNets in red); sources in results.csv")
    fig.tight_layout()
    for ax, points, colours in panels:
        _place_labels(ax, points, colours)
    return fig


def op_breakdown(profiles: dict[str, dict], path, threads: int = 1) -> Path:
    """Per model, stacked bars of time (ms) and of MACs per op type, from ``op_breakdown()`` profiles.

    Two panels with the same colours: where an op type's share of time is larger than its share of MACs,
    its MACs are expensive on this engine.
    """
    plt = _plt()
    if not profiles:
        return _save(None, path, "the op breakdown")
    types = sorted({t for p in profiles.values() for t in p["by_type"]},
                   key=lambda t: -sum(p["by_type"].get(t, 0.0) for p in profiles.values()))
    colours = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(types)}
    models = list(profiles)
    with_macs = all("by_type_macs" in p for p in profiles.values())
    panels = [("time per inference (ms)", "by_type", 1e-3)]
    if with_macs:
        panels.append(("MACs (M)", "by_type_macs", 1e-6))
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 1.6 + 0.8 * len(models)), squeeze=False)
    labelled: set[str] = set()
    for ax, (xlabel, key, scale) in zip(axes[0], panels):
        for y, m in enumerate(models):
            values = {t: profiles[m][key].get(t, 0) * scale for t in types}
            total, left = sum(values.values()), 0.0
            for t in types:
                v = values[t]
                if v <= 0:
                    continue
                ax.barh(y, v, left=left, color=colours[t], edgecolor="white",
                        label=None if t in labelled else t)
                labelled.add(t)
                if v / total > 0.06:
                    ax.text(left + v / 2, y, f"{100 * v / total:.0f}%", ha="center", va="center", fontsize=7)
                left += v
            ax.text(left, y, f" {left:.2f}" if scale == 1e-3 else f" {left:.0f}", va="center", fontsize=8)
        ax.set_yticks(range(len(models)), models if ax is axes[0][0] else [""] * len(models))
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.grid(True, axis="x", alpha=0.3)
        ax.margins(x=0.12)
    fig.legend(loc="lower center", ncol=min(7, len(types)), fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Native engine, {threads} thread{'s' if threads > 1 else ''}: time and MACs per op type "
                 f"(fused ops count once; 'ghost' = primary 1x1 + cheap depthwise)")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save(fig, path)
