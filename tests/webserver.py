"""The real Dagster webserver over a data folder, and its GraphQL: what `make ui` serves.

Shared by the UI tests (lineage, read-only mode) and the security tests (canaries).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ports import free_port

from sync_assets.settings import DataFolder

DAGSTER_WEBSERVER = str(Path(sys.executable).with_name("dagster-webserver"))
DAGSTER_DAEMON = str(Path(sys.executable).with_name("dagster-daemon"))
LOCATION = {"repositoryLocationName": "sync_assets.definitions", "repositoryName": "__repository__"}
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Webserver:
    port: int
    process: subprocess.Popen
    log: Path
    """Where the webserver's own output (stdout and stderr, run workers' included) goes."""

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=30) as answer:
            return answer.read()

    def launch(self, job: str, run_config: dict | None = None) -> dict:
        """GraphQL's launchRun, as the launchpad sends it; the answer's union member."""
        found = self.graphql(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                __typename
                ... on LaunchRunSuccess { run { runId } }
                ... on RunConfigValidationInvalid { errors { message } }
                ... on PythonError { message }
                ... on UnauthorizedError { message }
            } }""",
            {
                "params": {
                    "selector": {**LOCATION, "jobName": job},
                    "runConfigData": run_config or {},
                    "mode": "default",
                }
            },
        )
        return found["launchRun"]

    def wait_for_run(self, run_id: str, limit_s: float = 300) -> str:
        """The run's final status, polled until it finishes (bounded by `limit_s`)."""
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            status = self.graphql(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                {"id": run_id},
            )["runOrError"]["status"]
            if status in FINISHED:
                return status
            time.sleep(0.5)  # polling a run in another process, bounded by the deadline
        raise AssertionError(f"run {run_id} not finished after {limit_s} s")


def _wait_until_serving(server: Webserver, limit_s: float = 90) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"webserver exited: {server.log.read_text()[-2000:]}")
        try:
            server.get("/server_info")
            return
        except OSError:
            time.sleep(0.25)  # polling a server that is still starting, bounded by the deadline
    raise AssertionError(f"webserver not serving on {server.port} after {limit_s} s")


@contextlib.contextmanager
def webserver(
    home: Path, *options: str, daemon: bool = False, **env_vars: str
) -> Iterator[Webserver]:
    """`dagster-webserver` over the data folder `home` (its instance in `home/dagster`), with
    `env_vars` added to its environment and `options` (`--read-only`, say) to its command; with
    `daemon`, the daemon beside it (as `make ui` runs them), which starts the queued runs."""
    dagster_home = DataFolder(home).prepare_dagster_home()
    port = free_port()
    env = {
        **os.environ,
        "SYNCFABRIC_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        **env_vars,
    }
    log = home.parent / f"webserver-{port}.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [DAGSTER_WEBSERVER, "-h", "127.0.0.1", "-p", str(port), "-m", "sync_assets.definitions",
             *options],
            env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        helper = None
        if daemon:
            helper = subprocess.Popen(
                [DAGSTER_DAEMON, "run", "-m", "sync_assets.definitions"],
                env=env, stdout=out, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
    server = Webserver(port, process, log)
    try:
        _wait_until_serving(server)
        yield server
    finally:
        for running in (process, helper):
            if running is not None:
                running.terminate()
                running.wait(timeout=60)
