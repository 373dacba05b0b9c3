"""What every benchmark shares: machine facts, peak memory, fresh worker processes, results files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def machine_info() -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    memory_gb = None
    with contextlib.suppress(ValueError, OSError):
        memory_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "memory_gb": memory_gb,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "duckdb": version("duckdb"),
        "polars": version("polars"),
        "pandera": version("pandera"),
        "pyarrow": version("pyarrow"),
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "git": git_state(),
    }


def git_state() -> dict[str, Any]:
    """The commit measured, and the files changed since (the figures are for the working tree)."""

    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.rstrip()  # keep the leading blank of porcelain lines

    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "changed": [
            line[3:] for line in git("status", "--porcelain", "--", "sync_assets").splitlines()
        ],
    }


def peak_rss_mb() -> float:
    """This process's resident-set high-water mark (VmHWM), native allocations included."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_worker(module: str, args: list[str]) -> dict[str, Any]:
    """Run `python -m module args... --out FILE` in a fresh process; return the JSON it wrote.

    The child's own peak RSS, as the kernel accounted it (wait4), is added as `process_peak_rss_mb`.
    """
    with tempfile.TemporaryDirectory(prefix="syncfabric-bench-worker-") as folder:
        out = Path(folder) / "result.json"
        command = [sys.executable, "-m", module, *args, "--out", str(out)]
        process = subprocess.Popen(command, cwd=PROJECT_ROOT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            raise RuntimeError(f"worker failed with exit code {process.returncode}: {command}")
        result = json.loads(out.read_text())
    result["process_peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def write_worker_result(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result))


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A plain text table, numbers right-aligned."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return "" if value is None else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])
