"""`syncctl run` benchmark: the whole command on the demo at 1x, 4x and 10x its size.

For each scale k, `syncctl demo --customers 10,000k --orders 50,000k` builds the landscape in a
fresh data folder (not timed), then `syncctl run --json` runs once in its own process: wall
seconds, CPU seconds (user + system, as the kernel counted them for the child) and peak RSS
(wait4). The reference, in the same run: a fresh process that only imports
`sync_assets.definitions` (what every command pays before any data work).

So that growth is visible: the fixed cost (the intercept of wall seconds against k) and the cost
per 1x (the slope), from a least-squares line through the scales, and how much a 1x costs between
the two largest scales against between the two smallest (1.0 = linear, above = superlinear).

    python -m bench run                  # 1x, 4x, 10x
    python -m bench run --scales 1       # only the demo's own size (about 158,000 events)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import PROJECT_ROOT, format_table, machine_info, write_result

NAME = "run"
DEMO_CUSTOMERS = 10_000
DEMO_ORDERS = 50_000
DEFAULT_SCALES = (1, 4, 10)
AIM_SECONDS_1X = 10.0
"""Issue 11: `syncctl run` on the demo (1x) under 10 s on a quiet machine."""


def timed(command: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run a command to its end: wall and CPU seconds, peak RSS, exit code, its stdout."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            command, env=env, cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.DEVNULL
        )
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        out.seek(0)
        stdout = out.read().decode()
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit_code": os.waitstatus_to_exitcode(status),
        "stdout": stdout,
    }


def measure_scale(scale: int, root: Path) -> dict[str, Any]:
    syncctl = str(Path(sys.executable).with_name("syncctl"))
    env = {**os.environ, "SYNCFABRIC_HOME": str(root / f"x{scale}")}
    customers, orders = DEMO_CUSTOMERS * scale, DEMO_ORDERS * scale
    print(f"run: building the demo at {scale}x ({customers:,} customers) ...", flush=True)
    built = timed([syncctl, "demo", "--customers", str(customers), "--orders", str(orders)], env)
    if built["exit_code"] != 0:
        raise RuntimeError(f"syncctl demo failed at {scale}x (exit {built['exit_code']})")
    print(f"run: syncctl run at {scale}x ...", flush=True)
    ran = timed([syncctl, "run", "--json"], env)
    if not ran["stdout"].startswith("{"):
        raise RuntimeError(f"syncctl run printed no report at {scale}x (exit {ran['exit_code']})")
    report = json.loads(ran.pop("stdout"))
    shutil.rmtree(root / f"x{scale}", ignore_errors=True)
    return {
        "scale": scale,
        "customers": customers,
        "orders": orders,
        "events": report["landed"],
        **ran,
        "load_average_1m": os.getloadavg()[0],
    }


def reference() -> dict[str, Any]:
    """A process that imports the definitions and nothing else: the floor every command pays."""
    done = timed([sys.executable, "-c", "import sync_assets.definitions"], dict(os.environ))
    done.pop("stdout")
    return done


def growth(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Fixed seconds and seconds per 1x from a least-squares line, and how the cost per 1x
    changes: between the two largest scales over between the two smallest (1.0 = linear)."""
    grown: dict[str, Any] = {"fixed_seconds": None, "seconds_per_1x": None, "per_1x_ratio": None}
    if len(runs) < 2:
        return grown
    xs = [r["scale"] for r in runs]
    ys = [r["seconds"] for r in runs]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mean_x) ** 2 for x in xs
    )
    grown.update(fixed_seconds=mean_y - slope * mean_x, seconds_per_1x=slope)
    if len(runs) >= 3:

        def per_1x(a: dict[str, Any], b: dict[str, Any]) -> float:
            return (b["seconds"] - a["seconds"]) / (b["scale"] - a["scale"])

        grown["per_1x_ratio"] = per_1x(runs[-2], runs[-1]) / per_1x(runs[0], runs[1])
    return grown


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scales",
        type=int,
        nargs="+",
        default=list(DEFAULT_SCALES),
        help="multiples of the demo's size (default: 1 4 10)",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="syncfabric-bench-run-"))
    try:
        floor = reference()
        runs = [measure_scale(scale, root) for scale in sorted(args.scales)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    first = runs[0]
    result = {
        "benchmark": NAME,
        "reference": floor,
        "runs": runs,
        "growth": growth(runs),
        "aims": {"seconds_1x_below": AIM_SECONDS_1X},
        "seconds_1x": first["seconds"] if first["scale"] == 1 else None,
        "ratio_1x_to_import": first["seconds"] / floor["seconds"] if first["scale"] == 1 else None,
        "notes": [
            "each scale in a fresh data folder; `syncctl demo` (not timed) builds it, then "
            "`syncctl run --json` is timed as a process: ingest, reconciliation, missed events, "
            "delivery, confirming reconciliation",
            "reference = a process importing sync_assets.definitions only",
            "peak_rss_mb = the child's ru_maxrss (wait4)",
        ],
        "machine": machine_info(),
    }
    report(result)
    print(f"run: wrote {write_result(NAME, result)}")
    return result


def report(result: dict[str, Any]) -> None:
    floor = result["reference"]
    rows = [
        [
            f"{r['scale']}x",
            r["events"],
            r["seconds"],
            r["cpu_seconds"],
            r["peak_rss_mb"],
            r["seconds"] / floor["seconds"],
            r["load_average_1m"],
        ]
        for r in result["runs"]
    ]
    print()
    print(f"syncctl run: the demo at {', '.join(str(r['scale']) + 'x' for r in result['runs'])}")
    headers = ["scale", "events", "wall s", "cpu s", "peak MiB", "x import", "load 1m"]
    print(format_table(headers, rows))
    print(f"reference: import sync_assets.definitions {floor['seconds']:.2f} s")
    grown = result["growth"]
    if grown["seconds_per_1x"] is not None:
        linear = grown["per_1x_ratio"]
        print(
            f"growth: {grown['fixed_seconds']:.1f} s fixed + {grown['seconds_per_1x']:.1f} s per "
            "1x"
            + (
                f"; the largest scale's time per 1x is {linear:.2f} x the smallest's"
                if linear
                else ""
            )
        )
    if result["seconds_1x"] is not None:
        met = result["seconds_1x"] < AIM_SECONDS_1X
        print(
            f"aim syncctl run at 1x < {AIM_SECONDS_1X:g} s: {result['seconds_1x']:.1f} s "
            f"({'met' if met else 'missed'})"
        )
