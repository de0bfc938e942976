"""The generic DAG that runs one openEO batch job per DAG run: size -> load[] -> transform -> save.

The openEO API triggers runs with ``conf={"job_id": ...}`` and the job id as run id. A run
triggered in the Airflow UI (its form) or through Airflow's REST API with a ``process_graph``
instead becomes a new openEO job owned by the triggering Airflow user. Task bodies import
the heavy stage code lazily so that parsing this DAG stays cheap for the DAG processor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

DAG_ID = "openeo_batch_job"


PARAMS = {
    "job_id": Param(
        None,
        type=["null", "string"],
        description="Set by the openEO API. Leave empty when triggering by hand.",
    ),
    "process_graph": Param(
        None,
        type=["null", "object"],
        description="An openEO process graph (JSON). The run becomes an openEO job owned by you.",
    ),
    "title": Param(None, type=["null", "string"], description="Title of the openEO job."),
    "job_options": Param({}, type="object", description="openEO job options, e.g. engine."),
}


def _job_id_of(context: Any) -> str | None:
    """The openEO job of this run: given by the API, or created by ``size`` for other triggers."""
    conf = context["dag_run"].conf or {}
    job_id = conf.get("job_id") or context["ti"].xcom_pull(task_ids="size", key="job_id")
    return str(job_id) if job_id else None


def _job_id() -> str:
    job_id = _job_id_of(get_current_context())
    if job_id is None:
        raise ValueError("This run has no openEO job (the size task did not create one).")
    return job_id


def _on_failure(context: Any) -> None:
    from openeo_airflow.airflow import tasks

    job_id = _job_id_of(context)
    if job_id:
        exception = context.get("exception")
        reason = f"{type(exception).__name__}: {exception}" if exception else None
        tasks.mark_failed(job_id, context["ti"].task_id, reason)


@task
def size() -> list[str]:
    """Compile and size the job; returns the source nodes that ``load`` maps over. A small job
    the sizing fuses runs whole here instead, and the stage tasks are skipped."""
    from openeo_airflow.airflow import tasks

    context = get_current_context()
    run = context["dag_run"]
    conf = run.conf or {}
    job_id = conf.get("job_id")
    if not job_id:
        owner = run.triggering_user_name or "airflow"
        job_id = tasks.adopt_run(run.run_id, owner, conf)
        context["ti"].xcom_push(key="job_id", value=job_id)
    sizing = tasks.size(str(job_id))
    context["ti"].xcom_push(key="sizing", value=sizing)
    if sizing.get("fused") and tasks.fused(str(job_id)):
        return []  # done here: load (mapped over nothing), transform and save are skipped
    return list(sizing["sources"])


@task
def load(node_id: str) -> str:
    from openeo_airflow.airflow import tasks

    return tasks.load(_job_id(), node_id, get_current_context())


@task
def transform(loaded: list[str]) -> str:
    from openeo_airflow.airflow import tasks

    return tasks.transform(_job_id(), get_current_context())


@task
def save(result: str) -> list[str]:
    from openeo_airflow.airflow import tasks

    return tasks.save(_job_id(), get_current_context())


def build_batch_dag() -> DAG:
    with DAG(
        dag_id=DAG_ID,
        description="Runs one openEO batch job per run (triggered by the openEO API).",
        schedule=None,
        catchup=False,
        is_paused_upon_creation=False,
        max_active_runs=16,
        tags=["openeo"],
        default_args={
            "retries": 0,
            "on_failure_callback": _on_failure,
            "execution_timeout": timedelta(hours=12),
        },
        render_template_as_native_obj=True,
        params=PARAMS,
    ) as dag:
        sized: Any = size()
        loaded: Any = load.expand(node_id=sized)
        transformed: Any = transform(loaded)
        save(transformed)
    return dag
