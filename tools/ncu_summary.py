#!/usr/bin/env python3
"""The hottest kernels of an Nsight Compute CSV ([fast-gpu]: duration, achieved occupancy,
SM and DRAM throughput of the five hottest kernels of a LeNet-5 step, before and after).

    ncu --metrics gpu__time_duration.sum,sm__warps_active.avg.pct_of_peak_sustained_active,\\
sm__throughput.avg.pct_of_peak_sustained_elapsed,dram__throughput.avg.pct_of_peak_sustained_elapsed \\
        --csv --print-units base --log-file run.csv  build/gpu/cnn bench ...
    python3 tools/ncu_summary.py run.csv --top 5 --steps 5

Reads either of ncu's CSV layouts: the default "details" page (one row per kernel launch and
metric: ID, Kernel Name, Metric Name, Metric Unit, Metric Value) or `--page raw` (one row per
launch, the metrics as columns, a row of units after the header). Lines that are not CSV rows
of the table (ncu's ==PROF== and ==WARNING== lines) are skipped. Kernels are grouped by name;
the percentages are averaged over a kernel's launches weighted by their durations. --steps N
divides the times by the N steps the profiled run made (its warm-up steps included).
"""
from __future__ import annotations

import argparse
import csv
import io
import sys
from dataclasses import dataclass, field

DURATION = "gpu__time_duration.sum"
PERCENTS = {
    "occupancy %": "sm__warps_active.avg.pct_of_peak_sustained_active",
    "SM %": "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "DRAM %": "dram__throughput.avg.pct_of_peak_sustained_elapsed",
}
TIME_UNITS = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3,
              "second": 1e6, "s": 1e6}  # to microseconds


class NcuCsvError(ValueError):
    pass


def number(text: str) -> float | None:
    """ncu's numbers, with thousands separators; n/a and empty cells are None."""
    t = text.strip().replace(",", "")
    if not t or t.lower() in ("n/a", "nan"):
        return None
    try:
        return float(t)
    except ValueError:
        return None


def to_us(value: float, unit: str, where: str) -> float:
    u = unit.strip()
    if u not in TIME_UNITS:
        raise NcuCsvError(f"{where}: duration unit '{u}' is not a time unit ({', '.join(TIME_UNITS)})")
    return value * TIME_UNITS[u]


@dataclass
class Launch:
    name: str
    duration_us: float | None = None
    percents: dict[str, float] = field(default_factory=dict)


def table_lines(text: str) -> list[str]:
    """The CSV table's lines: from the first line that starts with a quoted "ID" header on."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith('"ID"'):
            return [l for l in lines[i:] if l.startswith('"')]
    raise NcuCsvError('no ncu CSV table found (no header line starting with "ID"): '
                      "was ncu run with --csv, and did the run profile any kernel?")


def parse(text: str) -> list[Launch]:
    rows = list(csv.reader(io.StringIO("\n".join(table_lines(text)))))
    header = rows[0]
    if "Kernel Name" not in header:
        raise NcuCsvError(f"the CSV header has no 'Kernel Name' column: {header[:8]}")
    name_at, id_at = header.index("Kernel Name"), header.index("ID")
    launches: dict[str, Launch] = {}
    if "Metric Name" in header:  # details page: one row per launch and metric
        m_at, u_at, v_at = (header.index(c) for c in ("Metric Name", "Metric Unit", "Metric Value"))
        for r, row in enumerate(rows[1:], start=2):
            if len(row) != len(header):
                raise NcuCsvError(f"row {r} has {len(row)} cells, the header {len(header)}")
            launch = launches.setdefault(row[id_at], Launch(row[name_at]))
            value = number(row[v_at])
            if value is None:
                continue
            if row[m_at] == DURATION:
                launch.duration_us = to_us(value, row[u_at], f"row {r}")
            for label, metric in PERCENTS.items():
                if row[m_at] == metric:
                    launch.percents[label] = value
    else:  # raw page: the metrics as columns, then a row of units
        if DURATION not in header:
            raise NcuCsvError(f"the CSV has no {DURATION} column: profile with --metrics {DURATION},...")
        units = rows[1] if len(rows) > 1 and not rows[1][id_at].strip() else None
        d_at = header.index(DURATION)
        for r, row in enumerate(rows[2 if units else 1:], start=3 if units else 2):
            if len(row) != len(header):
                raise NcuCsvError(f"row {r} has {len(row)} cells, the header {len(header)}")
            launch = launches.setdefault(row[id_at], Launch(row[name_at]))
            value = number(row[d_at])
            if value is not None:
                launch.duration_us = to_us(value, units[d_at] if units else "nsecond", f"row {r}")
            for label, metric in PERCENTS.items():
                if metric in header and (v := number(row[header.index(metric)])) is not None:
                    launch.percents[label] = v
    missing = [l for l in launches.values() if l.duration_us is None]
    if missing:
        raise NcuCsvError(f"{len(missing)} of {len(launches)} launches have no {DURATION} "
                          f"(first: {missing[0].name}): profile with --metrics {DURATION},...")
    return list(launches.values())


@dataclass
class KernelRow:
    name: str
    launches: int
    total_us: float
    percents: dict[str, float | None]


def summarize(launches: list[Launch]) -> list[KernelRow]:
    by_name: dict[str, list[Launch]] = {}
    for l in launches:
        by_name.setdefault(l.name, []).append(l)
    out = []
    for name, ls in by_name.items():
        total = sum(l.duration_us for l in ls)
        pct: dict[str, float | None] = {}
        for label in PERCENTS:
            weighted = [(l.percents[label], l.duration_us) for l in ls if label in l.percents]
            w = sum(d for _, d in weighted)
            pct[label] = sum(p * d for p, d in weighted) / w if weighted and w > 0 else None
        out.append(KernelRow(name, len(ls), total, pct))
    out.sort(key=lambda k: (-k.total_us, k.name))
    return out


def short(name: str, width: int = 60) -> str:
    base = name.split("(")[0] if not name.startswith("void ") else name[5:].split("(")[0]
    return base if len(base) <= width else base[: width - 3] + "..."


def report(rows: list[KernelRow], top: int, steps: int | None) -> str:
    total = sum(r.total_us for r in rows)
    per = f" per step (/{steps})" if steps else ""
    div = steps or 1
    head = f"{'kernel':60} {'launches':>8} {'us' + per:>18} {'share':>6}"
    for label in PERCENTS:
        head += f" {label:>12}"
    lines = [head, "-" * len(head)]
    for r in rows[:top]:
        line = f"{short(r.name):60} {r.launches:8d} {r.total_us / div:18.2f} {100 * r.total_us / total:5.1f}%"
        for label in PERCENTS:
            v = r.percents[label]
            line += f" {v:12.1f}" if v is not None else f" {'-':>12}"
        lines.append(line)
    lines.append(f"{'all ' + str(len(rows)) + ' kernels':60} {sum(r.launches for r in rows):8d} "
                 f"{total / div:18.2f} 100.0%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("csv", help="ncu --csv output (its --log-file)")
    ap.add_argument("--top", type=int, default=5, help="kernels to list (default 5)")
    ap.add_argument("--steps", type=int, default=0, help="steps the profiled run made: times per step")
    a = ap.parse_args(argv)
    if a.top < 1 or a.steps < 0:
        ap.error("--top must be at least 1 and --steps not negative")
    try:
        with open(a.csv, encoding="utf-8", errors="replace") as f:
            print(report(summarize(parse(f.read())), a.top, a.steps or None))
    except (OSError, NcuCsvError) as e:
        print(f"ncu_summary: {a.csv}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
