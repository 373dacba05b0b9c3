"""A starter project for a team's own landscape: what `syncctl init DIR` writes.

The files are the commented templates under `templates/` (package data), copied as they are: a
settings file, one example entity, two example systems that hold it and its event contract, every
field explained in a comment. Their names (`contact`, `system_a`, `system_b`) are placeholders the
team renames. A directory that holds anything is refused: nothing of the team's is overwritten.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from sync_assets.errors import EXIT_USAGE, SyncfabricError

TEMPLATES = "templates"


def templates() -> dict[str, str]:
    """Relative path ('systems/system_a.yaml') -> text, for every template file."""
    found: dict[str, str] = {}

    def walk(folder: Traversable, prefix: str) -> None:
        for item in folder.iterdir():
            if item.is_dir():
                walk(item, f"{prefix}{item.name}/")
            elif item.name.endswith(".yaml"):
                found[prefix + item.name] = item.read_text(encoding="utf-8")

    walk(resources.files(__package__ or "sync_assets.onboard") / TEMPLATES, "")
    return dict(sorted(found.items(), key=lambda item: (item[0].count("/"), item[0])))


def write_starter(directory: str | Path) -> list[Path]:
    """Write the starter project into `directory` (created if missing, refused unless empty);
    the paths written, settings first."""
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise SyncfabricError(f"{root} is a file, not a directory. Fix: name a new directory.")
    if root.is_dir() and any(root.iterdir()):
        raise SyncfabricError(
            f"{root} is not empty; syncctl init writes only into a new or empty directory, so "
            "that nothing of yours is overwritten. Fix: name a new directory.",
            exit_code=EXIT_USAGE,
        )
    written = []
    for relative, text in templates().items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
        written.append(path)
    return written


def next_steps(directory: str | Path) -> str:
    """What to do after `syncctl init`, from renaming the placeholders to the first check."""
    root = Path(directory)
    project = f"--project {root}"
    return f"""
Next steps:
  1. Rename the placeholders (the entity contact, the systems system_a and system_b) to yours,
     files included, and describe your entity in {root / "catalog"}/: its key, its attributes,
     and which system owns each.
  2. Propose each system's mapping from one of its real tables (read-only), review every guess,
     and put the block in {root / "systems"}/<system>.yaml:
       export SYNCFABRIC_SYSTEM_A_URL='postgresql+psycopg://user@host:5432/db'
       syncctl {project} map --system system_a --table <table> --entity contact
  3. Check the project's files (--connect also looks at every system's tables, read-only):
       syncctl {project} validate
  4. Reconcile, read-only, and see what differs between your systems:
       syncctl {project} check
  5. Sign off the event versions, so no later change to them lands unseen (docs/governance.md):
       syncctl {project} schema approve --by <your name> --note "first versions"
See docs/onboarding.md."""
