"""Which project this process works on: `--project DIR`, else SYNCFABRIC_PROJECT, else the
current directory.

`syncctl --project DIR` sets SYNCFABRIC_PROJECT, so every process it starts (the Dagster UI's code
server, the runs) loads the same project. Loaded projects are kept by folder: switching the
variable (as tests do) switches the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_assets.project.load import load_project
from sync_assets.project.model import Project

PROJECT_ENV = "SYNCFABRIC_PROJECT"

_loaded: dict[Path, Project] = {}


def project_root() -> Path:
    return Path(os.environ.get(PROJECT_ENV) or ".").resolve()


def current() -> Project:
    """The project this process works on, loaded and checked once per folder."""
    root = project_root()
    found = _loaded.get(root)
    if found is None:
        found = _loaded[root] = load_project(root)
    return found


def use(root: Path | str) -> Project:
    """Work on the project at `root` from now on, in this process and the ones it starts."""
    os.environ[PROJECT_ENV] = str(Path(root).resolve())
    return current()
