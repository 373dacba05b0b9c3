"""The demo's seed: `syncctl demo` calls `build` to write the demo company's three systems (SQLite
files in the data folder) and land their messy change events.

A project may carry a seed like this one (a Python package named in syncfabric.yaml's `seed:`)
to build example data for itself; Syncfabric's code knows nothing of what is in it.
"""

from __future__ import annotations

import argparse
import time

from sync_assets.settings import DataFolder

from .landscape import build_demo_landscape, landscape_exists


def exists(folder: DataFolder) -> bool:
    return landscape_exists(folder)


def build(folder: DataFolder, args: list[str]) -> str:
    """Build the landscape as `args` ask; one line
    saying what was built."""
    parser = argparse.ArgumentParser(prog="syncctl demo", add_help=False)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--orders", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--drift",
        type=int,
        help="rows to change by hand in systems that do not own them (and some more in "
        "proportion), for the first run's corrections to repair; 0 for none [default: 0.4%% of "
        "the customers, below the reconciliation's ERROR threshold]",
    )
    options = parser.parse_args(args)
    started = time.perf_counter()
    landscape = build_demo_landscape(
        folder,
        customers=options.customers,
        orders=options.orders,
        seed=options.seed,
        drift=options.customers * 4 // 1000 if options.drift is None else options.drift,
    )
    return (
        f"demo landscape in {folder.root}: {landscape.customers} customers, "
        f"{landscape.orders} orders, {landscape.events_landed} events landed in "
        f"{len(landscape.batches)} batches, {sum(landscape.drifted.values())} rows drifted by "
        f"hand ({time.perf_counter() - started:.1f} s)"
    )
