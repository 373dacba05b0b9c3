"""A project's seed: the Python package in its folder that builds example data (`syncctl demo`).

Named by `seed:` in syncfabric.yaml. It must define `exists(folder) -> bool` (is the example
data there already?) and `build(folder, args) -> str` (build it, as the command line's extra
arguments ask; one line saying what was built). It is imported from the project folder by path,
so Syncfabric's own code needs to know nothing of it.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from sync_assets.errors import EXIT_USAGE, SyncfabricError
from sync_assets.project.model import Project


def load_seed(project: Project) -> ModuleType:
    if not project.settings.seed:
        raise SyncfabricError(
            f"the project at {project.root} has no seed, so nothing to build: its systems are "
            "real. `syncctl run` works on them as they are (`seed:` in syncfabric.yaml names a "
            "package that builds example data, as examples/demo does).",
            exit_code=EXIT_USAGE,
        )
    package = project.root / project.settings.seed
    name = f"syncfabric_seed_{project.name}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
