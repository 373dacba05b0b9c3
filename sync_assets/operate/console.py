"""What syncctl shows while it works: quiet by default, everything with -v, progress on a terminal.

`CONSOLE` is the process's console, set once by syncctl's main group (`-v`). Without -v, Dagster's
own console logging is off (the instance still records every event, and the UI shows them); with
it, Dagster logs as usual, tracebacks included. On a terminal (stdout a tty, and not a `--json`
command) a run shows which step is running, its messages and counts (batches, rows) as they
come, and a line per run when it ends.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import click

COUNT_SKIP = {"seconds", "dagster/partition_row_count"}
"""Metadata that is not a count worth showing."""
MAX_COUNTS = 4


@dataclass
class Console:
    verbose: bool = False

    def configure(self, *, verbose: bool) -> None:
        """Set once by syncctl's main group: -v lets Dagster's own logging through."""
        self.verbose = verbose
        logging.getLogger("dagster").setLevel(logging.DEBUG if verbose else logging.WARNING)

    def notice(self, text: str) -> None:
        """A line for the operator, beside the command's output (stderr)."""
        click.echo(text, err=True)

    @property
    def dagster_log_level(self) -> str | None:
        """Dagster's console logger level: None keeps the run's own, without -v nothing shows."""
        return None if self.verbose else "CRITICAL"

    def progress_stream(self) -> TextIO | None:
        """Where progress goes: stdout when it is a terminal and the command prints no JSON."""
        context = click.get_current_context(silent=True)
        if context is not None and context.params.get("as_json"):
            return None
        return sys.stdout if sys.stdout.isatty() else None

    def watch(self, job: str) -> RunWatcher:
        return RunWatcher(job, self.progress_stream())


CONSOLE = Console()


@dataclass
class RunWatcher:
    """Follows one run's events as the instance stores them, and draws its progress: a status
    line that changes with each step (its messages, then its counts), and one line per run when
    it ends (or per step that failed)."""

    job: str
    stream: TextIO | None
    _began: float = field(default_factory=time.perf_counter)
    _started: dict[str, float] = field(default_factory=dict)
    _counts: dict[str, dict[str, int]] = field(default_factory=dict)
    _steps: int = 0
    _status_shown: bool = False

    def __call__(self, entry: Any) -> None:
        if self.stream is None:
            return
        event = entry.dagster_event
        if event is None:
            if entry.step_key and entry.user_message:
                self._status(f"{self.job} / {entry.step_key}: {entry.user_message}")
            return
        step = event.step_key
        kind = event.event_type_value
        if kind == "STEP_START" and step:
            self._started[step] = time.perf_counter()
            self._status(f"{self.job} / {step} …")
        elif kind == "ASSET_MATERIALIZATION" and step:
            counts = self._counts.setdefault(step, {})
            for key, value in event.event_specific_data.materialization.metadata.items():
                if key not in COUNT_SKIP and isinstance(value.value, int):
                    counts[key.removeprefix("dagster/")] = value.value
        elif kind == "STEP_SUCCESS" and step:
            self._steps += 1
            self._status(f"{self.job} / {step} done in {self._took(step)}{self._shown(step)}")
        elif kind == "STEP_FAILURE" and step:
            self._line(f"{self.job} / {step} FAILED after {self._took(step)}")

    def finish(self, success: bool | None) -> None:
        """The run is over: its line (None: it did not get to end, the error says why)."""
        if self.stream is None:
            return
        if success is None:
            if self._status_shown:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
                self._status_shown = False
            return
        took = time.perf_counter() - self._began
        verdict = "done" if success else "FAILED"
        self._line(f"{self.job}: {verdict}, {self._steps} step(s) succeeded in {took:.1f} s")

    def _took(self, step: str) -> str:
        return f"{time.perf_counter() - self._started.get(step, time.perf_counter()):.1f} s"

    def _shown(self, step: str) -> str:
        counts = list(self._counts.get(step, {}).items())[:MAX_COUNTS]
        return ("  " + ", ".join(f"{k} {v:,}" for k, v in counts)) if counts else ""

    def _status(self, text: str) -> None:
        assert self.stream is not None
        width = shutil.get_terminal_size().columns - 1
        self.stream.write("\r\x1b[2K" + text[:width])
        self.stream.flush()
        self._status_shown = True

    def _line(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write("\r\x1b[2K" + text + "\n")
        self.stream.flush()
        self._status_shown = False
