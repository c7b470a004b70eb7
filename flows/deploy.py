"""Create the scheduled Prefect deployments: `python -m flows.deploy` (make deploy).

Three deployments on the Prefect server named by PREFECT_API_URL, in the
process work pool `vgsales` (created if missing). Each deployment runs one
flow run at a time; the pool runs all three at once, on as many workers as
poll it. Where two runs would collide they take turns on locks in the
warehouse (ml.warehouse.locks): writing dbt invocations on one database, and
the champion gate of one model.

- `vgsales-pipeline/every-four-months`: the full pipeline (dbt build on the
  current raw file, training, champion gate), by default 06:00 UTC on the 1st
  of January, May and September;
- `vgsales-drift-check/daily`: drain the prediction log, measure drift,
  retrain on error-severity drift, by default daily at 07:00 UTC;
- `vgsales-prediction-drain/hourly`: only the drain, at a quarter past each hour: the
  API's stream keeps about 10,000 entries, which a busy day would overrun.

Deployments point at the flows by module path (`flows.pipeline.flow.vgsales_pipeline`),
so a worker started in the project (`make worker`, or the docker-compose
`worker` service) runs the code it has, with the settings of its environment.
Running it again updates the deployments in place. The crons below are the
only defaults; PIPELINE_CRON, DRIFT_CRON and DRAIN_CRON in the environment (or
the flags) override them. `python -m flows.deploy --list` (make deployments)
prints each deployment's schedule and its next scheduled runs.
"""

from __future__ import annotations

import argparse
import os
import sys

from ml.settings import export_to_environ, load_settings

WORK_POOL = "vgsales"
PIPELINE_DEPLOYMENT = "every-four-months"
DRIFT_DEPLOYMENT = "daily"
PIPELINE_CRON = "0 6 1 */4 *"
DRIFT_CRON = "0 7 * * *"
DRAIN_DEPLOYMENT = "hourly"
DRAIN_CRON = "15 * * * *"
# One run per deployment at a time, so the pool's limit is their number.
RUNS_PER_DEPLOYMENT = 1
POOL_CONCURRENCY = 3


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy", description=__doc__.splitlines()[0]
    )
    for flag, name, default, what in (
        ("--pipeline-cron", "PIPELINE_CRON", PIPELINE_CRON, "the full pipeline"),
        ("--drift-cron", "DRIFT_CRON", DRIFT_CRON, "the drift check"),
        ("--drain-cron", "DRAIN_CRON", DRAIN_CRON, "the prediction-log drain"),
    ):
        parser.add_argument(flag, default=os.environ.get(name, default),
                            help=f"schedule of {what} (default ${name}, else {default!r})")
    parser.add_argument("--timezone", default="UTC", help="time zone of the crons")
    parser.add_argument("--work-pool", default=WORK_POOL, help="process work pool to use")
    parser.add_argument("--list", action="store_true",
                        help="list the deployments, their schedules and next runs; change nothing")
    return parser.parse_args(argv)


def ensure_work_pool(name: str) -> None:
    """Create the process work pool `name` unless it exists; set its concurrency
    limit to `POOL_CONCURRENCY` (pools made by older checkouts ran one flow at a time)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    from prefect.workers.process import ProcessWorker

    description = ("vgsales flows: one run per deployment, all three at once; "
                   "warehouse locks order what they share")
    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            pool = None
        if pool is not None:
            if pool.concurrency_limit != POOL_CONCURRENCY:
                client.update_work_pool(name, WorkPoolUpdate(
                    concurrency_limit=POOL_CONCURRENCY, description=description))
                print(f"[deploy] work pool {name}: concurrency limit "
                      f"{pool.concurrency_limit} -> {POOL_CONCURRENCY}")
            return
        try:
            client.create_work_pool(
                WorkPoolCreate(
                    name=name,
                    type=ProcessWorker.type,
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                    concurrency_limit=POOL_CONCURRENCY,
                    description=description,
                )
            )
        except ObjectAlreadyExists:
            pass


def deploy(
    pipeline_cron: str, drift_cron: str, drain_cron: str, timezone: str, work_pool: str
) -> dict[str, str]:
    """Create or update the deployments; their ids by full name."""
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.drift_check.flow import drift_check, prediction_drain
    from flows.pipeline.flow import vgsales_pipeline

    ensure_work_pool(work_pool)
    deployments = [
        vgsales_pipeline.to_deployment(
            name=PIPELINE_DEPLOYMENT,
            schedule=Cron(pipeline_cron, timezone=timezone),
            concurrency_limit=RUNS_PER_DEPLOYMENT,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Full pipeline on the current raw file: dbt build, training, "
            "champion gate, API reload (the original design's retraining about every "
            "four months).",
            tags=["vgsales", "pipeline"],
        ),
        drift_check.to_deployment(
            name=DRIFT_DEPLOYMENT,
            schedule=Cron(drift_cron, timezone=timezone),
            concurrency_limit=RUNS_PER_DEPLOYMENT,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Drain the prediction log, measure drift against the champions' "
            "training references, retrain on error-severity drift.",
            tags=["vgsales", "monitoring"],
        ),
        prediction_drain.to_deployment(
            name=DRAIN_DEPLOYMENT,
            schedule=Cron(drain_cron, timezone=timezone),
            concurrency_limit=RUNS_PER_DEPLOYMENT,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description="Land the API's prediction log (Redis stream) in the warehouse.",
            tags=["vgsales", "monitoring"],
        ),
    ]
    return {
        deployment.full_name: str(deployment.apply(work_pool_name=work_pool))
        for deployment in deployments
    }


def list_deployments(runs_per_deployment: int = 3) -> list[str]:
    """One line per deployment: its schedules and the next runs the server has scheduled."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    lines = []
    with get_client(sync_client=True) as client:
        flows = {flow.id: flow.name for flow in client.read_flows()}
        for deployment in sorted(client.read_deployments(), key=lambda d: d.name):
            crons = ", ".join(
                f"{getattr(s.schedule, 'cron', s.schedule)} ({getattr(s.schedule, 'timezone', '')})"
                + ("" if s.active else " inactive")
                for s in deployment.schedules
            ) or "no schedule"
            upcoming = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(
                        type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=runs_per_deployment,
            )
            starts = ", ".join(f"{run.expected_start_time:%Y-%m-%d %H:%M %Z}" for run in upcoming)
            paused = " (paused)" if deployment.paused else ""
            lines.append(f"{flows.get(deployment.flow_id, '?')}/{deployment.name}{paused}: "
                         f"{crons}; next: {starts or 'none scheduled yet'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Prefect reads its settings (PREFECT_API_URL among them) when imported.
    export_to_environ(load_settings())
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        sys.exit(
            "PREFECT_API_URL is not set: schedules need a running Prefect server. "
            "Start one with `scripts/prefect_server.sh up` (make deploy does) and set "
            "PREFECT_API_URL=$(scripts/prefect_server.sh url)."
        )
    if args.list:
        lines = list_deployments()
        print("\n".join(lines) if lines else "[deploy] no deployments on this server: make deploy")
        print(f"[deploy] server {PREFECT_API_URL.value()}; its UI is at "
              f"{PREFECT_API_URL.value().removesuffix('/api')} (user and password: "
              "PREFECT_API_AUTH_STRING in .run/stack.env, user:password)")
        return 0
    ids = deploy(
        args.pipeline_cron, args.drift_cron, args.drain_cron, args.timezone, args.work_pool
    )
    for name, deployment_id in ids.items():
        print(f"[deploy] {name}: {deployment_id}")
    print(
        f"[deploy] schedules: pipeline {args.pipeline_cron!r}, drift check "
        f"{args.drift_cron!r}, drain {args.drain_cron!r} ({args.timezone}), server "
        f"{PREFECT_API_URL.value()}. "
        f"Runs start when a worker polls the pool: make worker"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
