"""Which project this process works on: `--project DIR`, else SYNCFABRIC_PROJECT, else the
current directory if it holds a syncfabric.yaml, else the project the data folder belongs to.

A data folder belongs to one project (its warehouse's tables are that project's): the first
command that writes it records the project (`bind`), and a later command run with another
project is refused rather than mixing two landscapes in one warehouse.

`syncctl --project DIR` sets SYNCFABRIC_PROJECT, so every process it starts (the Dagster UI's code
server, the runs) loads the same project. Loaded projects are kept by folder: switching the
variable (as tests do) switches the project.
"""

from __future__ import annotations

import os
from pathlib import Path

from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project.load import SETTINGS_FILE, load_project
from sync_assets.project.model import Project
from sync_assets.settings import HOME_ENV, DataFolder

PROJECT_ENV = "SYNCFABRIC_PROJECT"

_loaded: dict[Path, Project] = {}


def project_root() -> Path:
    if os.environ.get(PROJECT_ENV):
        return Path(os.environ[PROJECT_ENV]).resolve()
    here = Path.cwd()
    if (here / SETTINGS_FILE).is_file():
        return here
    recorded = DataFolder.from_env().project_file
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return here


_found: dict[tuple[str | None, str | None, str], Path] = {}
"""Where the project was found, by what decides it: code in a loop may ask for it often."""


def current() -> Project:
    """The project this process works on, loaded and checked once per folder."""
    decides = (os.environ.get(PROJECT_ENV), os.environ.get(HOME_ENV), os.getcwd())
    root = _found.get(decides)
    if root is None:
        root = _found[decides] = project_root()
    found = _loaded.get(root)
    if found is None:
        found = _loaded[root] = load_project(root)
    return found


def use(root: Path | str) -> Project:
    """Work on the project at `root` from now on, in this process and the ones it starts."""
    os.environ[PROJECT_ENV] = str(Path(root).resolve())
    return current()


def bind(folder: DataFolder, *, record: bool = True) -> None:
    """Refuse a data folder that belongs to another project; record the current project as its
    own if it has none yet (unless `record` is false: a command that only reads)."""
    root = current().root
    recorded = folder.project_file
    if not recorded.is_file():
        if record:
            recorded.write_text(f"{root}\n")
        return
    owner = Path(recorded.read_text().strip())
    if owner != root:
        raise SyncfabricError(
            f"the data folder {folder.root} belongs to the project at {owner}, not {root}: its "
            f"warehouse holds that project's tables. Fix: use --project {owner}, or another "
            f"SYNCFABRIC_HOME for {root} (if the project folder moved, write its new path into "
            f"{recorded})",
            exit_code=EXIT_USAGE,
        )
