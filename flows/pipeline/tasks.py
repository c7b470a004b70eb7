"""The pipeline's tasks: each calls one `ml` function and logs what it did.

Tasks receive `Settings` and create their own clients (engines, Redis, MLflow)
so nothing unpicklable crosses a task boundary. Prefect's result cache is off
(`NO_CACHE`): hashing frames and fitted pipelines into cache keys costs time
and buys nothing, because the steps are idempotent by design (snapshots are
keyed by content, the registry only promotes a better model).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pymysql
import redis
import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.tasks import exponential_backoff

from flows.pipeline.summary import LoadReport, SnapshotOutcome
from ml.data.fetch import describe_raw
from ml.modeling import goals
from ml.modeling.evaluate import Evaluation, evaluate
from ml.modeling.names import NameReference
from ml.modeling.pipelines import known_categories
from ml.modeling.point_in_time import PointInTime
from ml.modeling.registry import Registration, register
from ml.modeling.train import FittedModel, fit
from ml.settings import Settings
from ml.warehouse import snapshot
from ml.warehouse.dbt_runner import keep_production_state, progress_log, run_dbt
from ml.warehouse.locks import gate_lock_name, held_lock
from ml.warehouse.loads import read_freshness, read_load_history
from ml.warehouse.mart import mart_fingerprint, read_ml_mart, read_platforms, read_written_names
from ml.warehouse.validation_summary import Summary, build_summary

# MariaDB client errors worth retrying: cannot connect (2002, 2003), server
# gone or connection lost (2006, 2013), too many connections (1040), lock wait
# timeout (1205) and deadlock (1213). Access denied or a missing table is not.
TRANSIENT_MARIADB_ERRORS = {1040, 1205, 1213, 2002, 2003, 2006, 2013}
RELOAD_TIMEOUT_SECONDS = 60
QUALITY_ARTIFACT = "vgsales-data-quality"


def is_transient(error: BaseException | None) -> bool:
    """True for MariaDB errors that a retry a few seconds later may well avoid."""
    if isinstance(error, sa.exc.DBAPIError):
        error = error.orig
    return (
        isinstance(error, pymysql.err.OperationalError)
        and bool(error.args)
        and error.args[0] in TRANSIENT_MARIADB_ERRORS
    )


def _retry_if_transient(task, task_run, state) -> bool:
    return is_transient(state.result(raise_on_failure=False))


# Retries after 2, 4 and 8 s: long enough for a restarting MariaDB. Shared by
# every task that reads or writes MariaDB (flows.drift_check.tasks too).
MARIADB_RETRIES = dict(
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=2),
    retry_condition_fn=_retry_if_transient,
)


class WarehouseBuildError(RuntimeError):
    """dbt could not build the warehouse, or an error-severity test failed."""


@task(cache_policy=NO_CACHE)
def build_warehouse(settings: Settings) -> Summary:
    """`dbt build`: seeds, models and tests in dependency order.

    One invocation rather than `dbt seed` then `dbt build`, which would load
    the raw CSV twice: `build` loads the seeds first, tests them, and skips
    whatever depends on a seed whose error-severity test failed. Its artifacts go to a folder of their own per
    database, so a test's build never overwrites the user's. Warned tests are
    logged and returned in the summary; failed or errored ones fail the task,
    after their data-quality summary is published as an artifact.

    The raw CSV is checked first (`ml.data.csv_check`): a file the seed would store
    wrongly fails the task with its line and reason, before dbt starts.
    """
    logger = get_run_logger()
    # Checked, and named: the Kaggle file or another one (a data refresh).
    logger.info("Raw CSV %s", describe_raw(settings.seeds_dir / "vgsales.csv"))
    target = settings.run_dir / "dbt" / settings.mariadb_database
    # Every line dbt prints goes to a file beside its artifacts; the log
    # hears the quarters, the warnings and failures, and the totals.
    with progress_log(target / "dbt_output.log", logger.info) as progress:
        result = run_dbt(["build", "--no-use-colors"], settings, log=progress, target_path=target)
    if result.run_results is None:
        raise WarehouseBuildError(
            f"dbt build exited with {result.returncode} before running anything; "
            f"its output is in {target / 'dbt_output.log'}"
        )
    summary = build_summary(target, settings)
    for warning in summary.warnings:
        logger.warning("dbt warning: %s", warning)
    if not (result.ok and summary.ok):
        create_markdown_artifact(
            key=QUALITY_ARTIFACT,
            markdown=summary.markdown,
            description="Data-quality summary of the failed dbt build",
        )
        raise WarehouseBuildError(
            f"dbt build failed ({summary.totals}); the failing tests and sample "
            f"rows are in the '{QUALITY_ARTIFACT}' artifact and {target}"
        )
    logger.info("dbt build passed: %s", summary.totals)
    logger.info("Production state for `make dbt-changed`: %s", keep_production_state(target, settings))
    return summary


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def describe_loads(settings: Settings) -> LoadReport:
    """What the loads of the raw file changed (`mon_sales_revisions`, built by
    `dbt build`) and dbt's source freshness of the load audit.

    A stale load is a warning in the summary, never a failure: the pipeline
    has just loaded the file it was given.
    """
    logger = get_run_logger()
    # A folder of its own: the build's run_results.json stays for people to read.
    target = settings.run_dir / "dbt" / f"{settings.mariadb_database}-freshness"
    with progress_log(target / "dbt_output.log", logger.info) as progress:
        result = run_dbt(
            ["source", "freshness", "--select", "source:seed_loads", "--no-use-colors"],
            settings, log=progress, target_path=target,
        )
    try:
        freshness = read_freshness(target).describe()
    except (FileNotFoundError, KeyError) as error:
        freshness = f"**not checked**: {error} (dbt exited with {result.returncode})."
    if not freshness.startswith("pass"):
        logger.warning("Load freshness: %s", freshness)
    history = read_load_history(settings)
    logger.info("%s", history.describe_latest())
    return LoadReport(history.describe_latest(), history.to_markdown(), freshness)


@dataclass(frozen=True)
class MartFrame:
    """The mart as training sees it, and where it came from."""

    frame: pd.DataFrame
    outcome: SnapshotOutcome


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def snapshot_mart(settings: Settings, ttl: int) -> MartFrame:
    """The ML mart via its Redis snapshot, exporting it only when it changed.

    A fingerprint query decides whether the snapshot of the current mart is
    already in Redis (reuse) or the mart must be read and published. Training
    always gets the frame back from Redis, so a first run and a rerun see
    byte-identical input. When Redis is unavailable the mart is read straight
    from MariaDB and the outcome says the run is degraded.
    """
    logger = get_run_logger()
    fingerprint = mart_fingerprint(settings)
    client = snapshot.connect(settings.redis_url_as("flows"))
    try:
        key, frame, reused = snapshot.reuse_or_publish(
            client, fingerprint, lambda: read_ml_mart(settings), ttl
        )
    except redis.RedisError as error:
        reason = f"Redis unavailable ({type(error).__name__}: {error})"
        logger.warning("%s: training reads the mart straight from MariaDB (degraded)", reason)
        frame = read_ml_mart(settings)
        return MartFrame(frame, SnapshotOutcome(fingerprint, len(frame), degraded=reason))
    finally:
        client.close()
    if reused:
        logger.info("Mart unchanged (fingerprint %s): reusing snapshot %s", fingerprint, key)
    else:
        logger.info("Exported %s rows from MariaDB into %s (TTL %s s)", f"{len(frame):,}", key, ttl)
    return MartFrame(frame, SnapshotOutcome(fingerprint, len(frame), key, reused=reused))


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def platform_reference(settings: Settings) -> pd.DataFrame:
    """The platform reference the forecasts describe platforms from (`dim_platform`)."""
    platforms = read_platforms(settings)
    get_run_logger().info("Platform reference: %s platforms", len(platforms))
    return platforms


@task(cache_policy=NO_CACHE, **MARIADB_RETRIES)
def name_reference(settings: Settings) -> NameReference:
    """The name reference the models resolve a request's names with
    (`ml_written_names`: the publisher lineage, genre and platform names)."""
    names = NameReference.from_frame(read_written_names(settings))
    get_run_logger().info("Name reference: %s written names", len(names))
    return names


@task(cache_policy=NO_CACHE)
def fit_model(
    model_name: str, frame: pd.DataFrame, platforms: pd.DataFrame, names: NameReference
) -> FittedModel:
    """Train `model_name` on its fitting rows (see `ml.modeling.train.fit`)."""
    fitted = fit(model_name, frame, platforms, names)
    get_run_logger().info(
        "%s fitted on %s rows (%s)", model_name, f"{fitted.n_train:,}", fitted.version_tags
    )
    return fitted


@task(cache_policy=NO_CACHE)
def evaluate_model(
    fitted: FittedModel, frame: pd.DataFrame, platforms: pd.DataFrame
) -> Evaluation:
    """Metrics, CV and baselines on the held-out splits, and the rolling-origin
    backtest of a model fitted on every row (see `ml.modeling.evaluate`)."""
    return evaluate(fitted, frame, platforms, progress=get_run_logger().info)


@task(cache_policy=NO_CACHE)
def check_goals(
    fitted: FittedModel, evaluation: Evaluation, frame: pd.DataFrame, platforms: pd.DataFrame
) -> str:
    """The forecast's goals beside the baselines (`ml.modeling.goals`), as markdown."""
    measured = goals.check(evaluation.metrics, PointInTime(frame, platforms, fitted.names))
    if fitted.names is not None:
        measured.append(goals.lineage_goal(known_categories(fitted.pipeline), frame, fitted.names))
    logger = get_run_logger()
    missed = [goal for goal in measured if not goal.met]
    # The table is in the summary; the log names what was missed.
    logger.info("Forecast goals: %d of %d met%s", len(measured) - len(missed), len(measured),
                "".join(f"; MISSED {g.goal}: {g.value} (target {g.target})" for g in missed))
    by_shape = goals.shapes_markdown(evaluation.metrics)
    return goals.to_markdown(measured) + (f"\n\nThe backtest by request shape:\n\n{by_shape}"
                                          if by_shape else "")


@task(cache_policy=NO_CACHE)
def register_model(
    fitted: FittedModel, evaluation: Evaluation, settings: Settings, tags: dict[str, str]
) -> Registration:
    """Log to MLflow and register; the champion gate decides the alias.

    Under the model's gate lock: a pipeline and a drift retrain registering
    at once are judged one after the other, the second against the
    champion the first left.
    """
    logger = get_run_logger()
    with held_lock(settings, gate_lock_name(fitted.model_name), purpose="champion gate",
                   log=logger.info):
        registration = register(fitted, evaluation, settings, tags)
    logger.info(
        "%s version %s%s: %s",
        fitted.model_name,
        registration.version,
        " promoted to champion" if registration.promoted else f" ({registration.alias})",
        registration.reason,
    )
    return registration


@task(cache_policy=NO_CACHE)
def document_model(settings: Settings, registration: Registration, out_dir: str | None) -> str:
    """The model card and datasheet of the registered version, logged to its run
    (ml.reporting.model_card) and, with `out_dir`, written there. A card that
    cannot be built is a warning: the version is registered by then."""
    from ml.reporting.model_card import publish

    logger = get_run_logger()
    try:
        places = publish(
            settings,
            registration.model_name,
            registration.version,
            Path(out_dir) if out_dir else None,
        )
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        logger.warning(
            "model card of %s version %s not built: %s: %s",
            registration.model_name, registration.version, type(error).__name__, error,
        )
        return f"not built: {type(error).__name__}: {error}"
    logger.info("model card of %s version %s: %s", registration.model_name,
                registration.version, "; ".join(places))
    return "; ".join(places)


def request_reload(
    port: int, token: str, timeout: float = RELOAD_TIMEOUT_SECONDS
) -> tuple[str, str]:
    """POST /admin/reload to the API on this host: `(status, sentence)`.

    `status` is "reloaded", "refused" (the API answered with an error) or
    "absent" (nothing listens on the port, which is normal: an API that is
    not running loads the champions when it starts).
    """
    url = f"http://127.0.0.1:{port}/admin/reload"
    request = urllib.request.Request(
        url, method="POST", headers={"Authorization": f"Bearer {token}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read().decode(errors="replace")
    except urllib.error.HTTPError as error:
        return "refused", f"The API at {url} refused the reload: HTTP {error.code} {error.reason}."
    except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        return "absent", (
            f"No API answered at {url} ({reason}); it will load the new champion "
            "when it starts."
        )
    return "reloaded", f"The API at {url} reloaded the champions: {body.strip()[:300]}"


@task(cache_policy=NO_CACHE)
def signal_reload(settings: Settings) -> str:
    """Tell a running API about new champions; a stopped API is only noted."""
    token = settings.api_admin_token.get_secret_value()
    status, message = request_reload(settings.api_port, token)
    if status == "refused":
        get_run_logger().warning(message)
    else:
        get_run_logger().info(message)
    return message


@task(cache_policy=NO_CACHE)
def publish_report(settings: Settings, out_dir: str, tags: dict[str, str]) -> str:
    """The analytics report of this run (ml.reporting.analytics_report) as a file, an MLflow run
    and a Prefect link. A report that cannot be built is a warning: the
    models are registered by then, and the run stays valid without it."""
    from ml.reporting.analytics_report import build_report, log_report

    logger = get_run_logger()
    try:
        path = build_report(settings, Path(out_dir), progress=logger.info)
        run_id = log_report(path, settings, tags)
    except Exception as error:  # noqa: BLE001 - reported, not fatal
        logger.warning("analytics report not built: %s: %s", type(error).__name__, error)
        return f"not built: {type(error).__name__}: {error}"
    create_link_artifact(
        key="vgsales-analytics-report",
        link=path.resolve().as_uri(),
        link_text="Analytics report (static HTML)",
        description=f"Also logged to MLflow run {run_id} (experiment vgsales-reports)",
    )
    return f"{path} (MLflow run {run_id})"

