"""Run the benchmarks: `python -m bench` runs every one, `python -m bench ingest --events 200000` one.

Each benchmark module offers `add_arguments(parser)` and `run(args)`, prints its figures and writes
them as JSON to bench/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench import (
    adopt,
    bus,
    channels,
    check,
    deliver,
    ingest,
    missed,
    observe,
    pii,
    reconcile,
    rules,
    run,
    summary,
)
from bench.common import PROJECT_ROOT

BENCHMARKS = {
    ingest.NAME: ingest,
    reconcile.NAME: reconcile,
    deliver.NAME: deliver,
    adopt.NAME: adopt,
    channels.NAME: channels,
    pii.NAME: pii,
    check.NAME: check,
    missed.NAME: missed,
    rules.NAME: rules,
    observe.NAME: observe,
    run.NAME: run,
    bus.NAME: bus,
    summary.NAME: summary,
}
FULL_RUN_ARGS = {reconcile.NAME: ["--with-10m"]}
"""`python -m bench` (every benchmark): the arguments that make each measure issue 11's rows."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for name, module in BENCHMARKS.items():
        first_line = (module.__doc__ or "").splitlines()[0]
        sub = subparsers.add_parser(
            name, help=first_line.replace("%", "%%")
        )  # argparse formats help
        module.add_arguments(sub)
    args = parser.parse_args(argv)
    # The demo's landscape unless one is named (as `make bench` does).
    os.environ.setdefault("SYNCFABRIC_PROJECT", str(PROJECT_ROOT / "examples" / "demo"))
    if args.benchmark:
        selected = [(args.benchmark, args)]
    else:  # every benchmark at its default size, then the table of them all
        selected = [
            (name, subparsers.choices[name].parse_args(FULL_RUN_ARGS.get(name, [])))
            for name in BENCHMARKS
            if name != summary.NAME
        ]
    results = {}
    for name, benchmark_args in selected:
        started = time.perf_counter()
        results[name] = BENCHMARKS[name].run(benchmark_args)
        print(f"{name}: done in {time.perf_counter() - started:.0f} s", flush=True)
    if not args.benchmark:
        print()
        print(summary.table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
