"""Run the benchmarks: `python -m bench` runs every one, `python -m bench ingest --events 200000` one.

Each benchmark module offers `add_arguments(parser)` and `run(args)`, prints its figures and writes
them as JSON to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import adopt, channels, check, deliver, ingest, pii, reconcile
from bench.common import PROJECT_ROOT

BENCHMARKS = {
    ingest.NAME: ingest,
    reconcile.NAME: reconcile,
    deliver.NAME: deliver,
    adopt.NAME: adopt,
    channels.NAME: channels,
    pii.NAME: pii,
    check.NAME: check,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        summary = (module.__doc__ or "").splitlines()[0]
        sub = subparsers.add_parser(name, help=summary.replace("%", "%%"))  # argparse formats help
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    # The demo's landscape unless one is named (as `make bench` does).
    os.environ.setdefault("SYNCFABRIC_PROJECT", str(PROJECT_ROOT / "examples" / "demo"))
    if args.benchmark:
        selected = [(args.benchmark, args)]
    else:  # every benchmark at its default size
        selected = [(name, subparsers.choices[name].parse_args([])) for name in BENCHMARKS]
    for name, benchmark_args in selected:
        started = time.perf_counter()
        BENCHMARKS[name].run(benchmark_args)
        print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
