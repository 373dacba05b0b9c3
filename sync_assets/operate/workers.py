"""Steps in worker processes: Dagster's celery executor over RabbitMQ (`dagster-celery`).

With `SYNCFABRIC_CELERY_BROKER_URL` set, the reconciliation jobs (`reconcile`, `reconcile_check`)
run on `dagster_celery.celery_executor`: the run's process (syncctl, or the run worker the UI's
daemon launches) plans the steps, claims their pools, and sends each step as a task to the broker;
a `syncctl worker` process, on this host or another that sees the same data folder, executes it and
sends its events back (`rpc://`). Unset, nothing here is imported and every job runs as before.

What spreads and what stays serialized: the pools are claimed by the run's process before a step
is sent (dagster_celery's loop runs Dagster's `InstanceConcurrencyContext`), so the
`duckdb_writer` pool (limit 1) still lets one step write the warehouse at a time, whichever worker
runs it. Every step that writes the warehouse (each snapshot streams its system's rows into it)
holds that slot; the checks and rules, which only read, run side by side. The delivery job stays
in its own process: its ops hand each other the corrections (records' values, PII) in memory, and
the celery executor would pickle them into Dagster's storage.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sync_assets.errors import EXIT_FAILED, EXIT_USAGE, SyncfabricError
from sync_assets.security.redact import redact_text
from sync_assets.settings import CELERY_BROKER_URL_ENV, CELERY_RESULT_BACKEND, celery_broker_url

if TYPE_CHECKING:
    import dagster as dg

    from sync_assets.settings import DataFolder

EXECUTOR_NAME = "celery"
"""The name of dagster_celery's executor, as a job built with it carries it."""
PING_SECONDS = 1.0
"""How long a run waits for a worker to answer before it refuses to send steps nowhere."""


def step_executor() -> dg.ExecutorDefinition | None:
    """The executor of the jobs whose steps may run in workers: dagster_celery's on the broker
    named by `SYNCFABRIC_CELERY_BROKER_URL` (read from the environment where the run starts, so
    the URL and its password are in no run config), or None to keep the default."""
    if celery_broker_url() is None:
        return None
    from dagster_celery import celery_executor

    return celery_executor.configured(
        {"broker": {"env": CELERY_BROKER_URL_ENV}, "backend": CELERY_RESULT_BACKEND}
    )


def runs_in_workers(job: Any) -> bool:
    """Whether `job`'s steps go to the workers (it was built with `step_executor()`)."""
    executor = getattr(job, "executor_def", None)
    return executor is not None and executor.name == EXECUTOR_NAME


def _shown(url: str) -> str:
    return redact_text(url, url=url)


def require_broker() -> str:
    """The broker's URL, or an error saying how to set it."""
    url = celery_broker_url()
    if url is None:
        raise SyncfabricError(
            f"{CELERY_BROKER_URL_ENV} is not set, so there is no broker to take steps from; fix: "
            f"export {CELERY_BROKER_URL_ENV}=pyamqp://user:password@rabbitmq-host:5672// (the "
            "same value as the runs that send the steps)",
            exit_code=EXIT_USAGE,
        )
    return url


def celery_app(url: str) -> Any:
    """Dagster's celery app (as `dagster_celery.app` builds it, with its `execute_plan` task) on
    this broker, configured in memory: `dagster-celery worker start` would write the URL, its
    password too, into a file under the instance."""
    from dagster_celery.executor import CeleryExecutor
    from dagster_celery.make_app import make_app
    from dagster_celery.tasks import create_task

    app = make_app(CeleryExecutor.for_cli(broker=url, backend=CELERY_RESULT_BACKEND).app_args())
    create_task(app)
    return app


def check_broker(app: Any, url: str) -> None:
    """Refuse, with the fix, when the broker does not answer (celery would retry forever)."""
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=5)
    except Exception as error:  # kombu's OperationalError, or the socket's own error
        raise SyncfabricError(
            f"cannot reach the celery broker at {_shown(url)} ({type(error).__name__}); fix: start "
            f"RabbitMQ there, or correct {CELERY_BROKER_URL_ENV}",
            exit_code=EXIT_FAILED,
        ) from None


def require_workers(url: str) -> list[str]:
    """The workers listening on the broker; an error when none answers, since a step sent to
    a queue nobody reads waits forever."""
    app = celery_app(url)
    check_broker(app, url)
    answers = app.control.ping(timeout=PING_SECONDS) or []
    workers = sorted(name for answer in answers for name in answer)
    if not workers:
        raise SyncfabricError(
            f"no worker answers on the celery broker {_shown(url)}, and {CELERY_BROKER_URL_ENV} "
            "sends the reconciliation's steps to workers; fix: start one (`syncctl worker`, on a "
            f"host that sees this data folder, with the same {CELERY_BROKER_URL_ENV}), or unset "
            "the variable to run the steps in this process",
            exit_code=EXIT_FAILED,
        )
    return workers


def worker_arguments(name: str | None, concurrency: int) -> list[str]:
    """`celery worker`'s arguments as `dagster-celery worker start` passes them."""
    node = f"{name or 'syncfabric'}@%h"
    return [
        "worker",
        "--loglevel=INFO",
        "--prefetch-multiplier=1",
        f"--concurrency={concurrency}",
        "-n",
        node,
    ]


def run_worker(folder: DataFolder, name: str | None, concurrency: int) -> None:
    """Take steps from the broker until stopped (SIGTERM, Ctrl-C): a celery worker of Dagster's
    app, on the data folder's instance and warehouse, with `concurrency` processes."""
    url = require_broker()
    from sync_assets.runner import use_data_folder

    use_data_folder(folder)
    import sync_assets.definitions  # noqa: F401  # the project loads here, not in each task

    app = celery_app(url)
    check_broker(app, url)
    app.worker_main(worker_arguments(name, concurrency))
