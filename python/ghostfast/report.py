"""Records (lists of flat dicts) rendered as Markdown, CSV or JSON, and read back from CSV / JSON."""
from __future__ import annotations

import csv
import io
import json

FORMATS = ("md", "csv", "json")

# Columns of the long comparison table (one row per record), with headers and number formats.
COMPARE_COLUMNS = [
    ("model", "model", None), ("backend", "backend", None), ("threads", "threads", None),
    ("batch", "batch", None), ("params", "params (M)", lambda v: f"{v / 1e6:.2f}"),
    ("macs", "MACs (M)", lambda v: f"{v / 1e6:.1f}"),
    ("weight_bytes_fp32", "weights fp32 (MB)", lambda v: f"{v / 1e6:.2f}"),
    ("median_ms", "median ms", lambda v: f"{v:.3f}"), ("p10_ms", "p10 ms", lambda v: f"{v:.3f}"),
    ("p90_ms", "p90 ms", lambda v: f"{v:.3f}"),
    ("ratio_to_baseline", "x baseline", lambda v: f"{v:.2f}"),
    ("ms_per_gmac", "ms/GMAC", lambda v: f"{v:.2f}"),
    ("check_max_rel_err", "max rel. err", lambda v: f"{v:.1e}"),
    ("top1", "top-1", lambda v: f"{v:.1f}"),
    ("status", "status", None),
]


def _cell(value, fmt) -> str:
    if value is None:
        return "-"
    return fmt(value) if fmt else str(value)


def to_markdown(records: list[dict], columns=None) -> str:
    from tabulate import tabulate

    if columns is None:
        keys = list(dict.fromkeys(k for r in records for k in r))
        columns = [(k, k, None) for k in keys]
    rows = [[_cell(r.get(k), fmt) for k, _, fmt in columns] for r in records]
    return tabulate(rows, headers=[h for _, h, _ in columns], tablefmt="github", disable_numparse=True)


def to_csv(records: list[dict]) -> str:
    """CSV with a header of every key; None is an empty cell, lists and dicts are JSON text."""
    keys = list(dict.fromkeys(k for r in records for k in r))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in records:
        writer.writerow({k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in r.items()})
    return buf.getvalue()


def _parse_cell(text: str):
    # The inverse of to_csv's cells: Python writes floats with repr, so int / float parsing is exact.
    if text == "":
        return None
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def from_csv(text: str) -> list[dict]:
    """Records from :func:`to_csv` text, with numbers, booleans and None restored."""
    return [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))]


def to_json(records: list[dict], environment: dict | None = None, **extra) -> str:
    """A JSON list of records, or ``{"environment", **extra, "records"}`` when an environment is given."""
    if environment is None and not extra:
        return json.dumps(records, indent=2)
    return json.dumps({"environment": environment, **extra, "records": records}, indent=2)


def from_json(text: str) -> list[dict]:
    """The records of :func:`to_json` text (either form)."""
    doc = json.loads(text)
    return doc["records"] if isinstance(doc, dict) else doc


def render(records: list[dict], fmt: str, columns=None, environment: dict | None = None) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "md":
        return to_markdown(records, columns)
    if fmt == "csv":
        return to_csv(records)
    return to_json(records, environment)
