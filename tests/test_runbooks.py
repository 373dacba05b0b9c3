"""Every command of every runbook runs as written: the ```sh fences of docs/runbooks/*.md, in
order, each in bash from the repository's root, with SYNCFABRIC_HOME a copy of a demo data folder
(`syncctl demo --customers 300 --orders 1200`, then `syncctl run`: the ids the runbooks quote are
that demo's). A command exits 0 unless its comment says `exit N`.

And every runbook the code links to exists: each alert kind's, and each RUNBOOK constant."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from commands import assert_no_traceback, syncctl

from sync_assets.operate.alerts import KINDS, RUNBOOKS
from sync_assets.operate.runbooks import DOCS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
RUNBOOK_FILES = sorted((DOCS / "runbooks").glob("*.md"))
FENCE = re.compile(r"^[ \t]*```sh\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL)
EXIT = re.compile(r"\bexit (\d+)\b")


def commands(text: str) -> list[tuple[str, int]]:
    """(command, expected exit code) of each command line in the sh fences, in order."""
    found = []
    for fence in FENCE.findall(text):
        for line in fence.splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            command, _, comment = line.partition(" #")
            expected = EXIT.search(comment)
            found.append((command.strip(), int(expected.group(1)) if expected else 0))
    return found


def test_the_fences_are_read_as_commands_with_their_exit_codes():
    text = "x\n```sh\n# a comment\na --b   # exit 2: why\nc\n```\n```text\nnot run\n```\n"
    assert commands(text) == [("a --b", 2), ("c", 0)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("runbooks") / "syncfabric"
    for step in (("demo", "--customers", "300", "--orders", "1200"), ("run",)):
        done = syncctl(home, *step)
        assert done.returncode == 0, done.stderr[-3000:]
    return home


@pytest.mark.parametrize("runbook", RUNBOOK_FILES, ids=[p.stem for p in RUNBOOK_FILES])
def test_every_command_of_the_runbook_runs_as_written(runbook, demo_home, tmp_path):
    home = tmp_path / "syncfabric"
    shutil.copytree(demo_home, home)
    env = {**os.environ, "SYNCFABRIC_HOME": str(home)}
    for command, expected in commands(runbook.read_text()):
        ran = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert ran.returncode == expected, f"{runbook.name}: {command}\n{ran.stderr[-3000:]}"
        assert_no_traceback(ran)


def test_every_runbook_the_code_links_to_exists():
    assert set(RUNBOOKS) == set(KINDS)
    for name in RUNBOOKS.values():
        assert (DOCS / "runbooks" / f"{name}.md").is_file(), name
    linked = set()
    for source in [*ROOT.glob("sync_assets/**/*.py"), *ROOT.glob("checks/*.py")]:
        linked |= set(re.findall(r"docs/runbooks/[a-z-]+\.md", source.read_text()))
    assert linked and all((ROOT / path).is_file() for path in linked), linked
