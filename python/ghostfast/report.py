"""Records (lists of flat dicts) rendered as Markdown, CSV or JSON."""
from __future__ import annotations

import csv
import io
import json

FORMATS = ("md", "csv", "json")

# Columns of the comparison table a reader sees first, with their headers and number formats.
COMPARE_COLUMNS = [
    ("model", "model", None), ("backend", "backend", None), ("threads", "threads", None),
    ("batch", "batch", None), ("params", "params (M)", lambda v: f"{v / 1e6:.2f}"),
    ("macs", "MACs (M)", lambda v: f"{v / 1e6:.1f}"),
    ("weight_bytes_fp32", "weights fp32 (MB)", lambda v: f"{v / 1e6:.2f}"),
    ("median_ms", "median ms", lambda v: f"{v:.3f}"), ("p10_ms", "p10 ms", lambda v: f"{v:.3f}"),
    ("p90_ms", "p90 ms", lambda v: f"{v:.3f}"), ("ms_per_gmac", "ms/GMAC", lambda v: f"{v:.2f}"),
    ("top1", "top-1 (published)", lambda v: "-" if v is None else f"{v:.1f}"),
]


def to_markdown(records: list[dict], columns=None) -> str:
    from tabulate import tabulate

    if columns is None:
        keys = list(dict.fromkeys(k for r in records for k in r))
        columns = [(k, k, None) for k in keys]
    rows = [[(fmt(r[k]) if fmt and r.get(k) is not None else r.get(k, "")) for k, _, fmt in columns]
            for r in records]
    return tabulate(rows, headers=[h for _, h, _ in columns], tablefmt="github", disable_numparse=True)


def to_csv(records: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue()


def to_json(records: list[dict], environment: dict | None = None) -> str:
    doc = {"environment": environment, "records": records} if environment is not None else records
    return json.dumps(doc, indent=2)


def render(records: list[dict], fmt: str, columns=None, environment: dict | None = None) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "md":
        return to_markdown(records, columns)
    if fmt == "csv":
        return to_csv(records)
    return to_json(records, environment)
