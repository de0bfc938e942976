"""The generic DAG that runs one openEO batch job per DAG run: size -> load[] -> transform -> save.

Runs are triggered with ``conf={"job_id": ...}`` and the job id as run id. Task bodies import
the heavy stage code lazily so that parsing this DAG stays cheap for the DAG processor.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, get_current_context, task

DAG_ID = "openeo_batch_job"


def _job_id() -> str:
    context = get_current_context()
    conf = context["dag_run"].conf or {}
    job_id = conf.get("job_id")
    if not job_id:
        raise ValueError("This DAG runs openEO batch jobs: trigger it with conf {'job_id': ...}")
    return str(job_id)


def _on_failure(context: Any) -> None:
    from openeo_airflow.airflow import tasks

    conf = context["dag_run"].conf or {}
    if conf.get("job_id"):
        tasks.mark_failed(str(conf["job_id"]))


@task
def size() -> list[str]:
    """Compile and size the job; returns the source nodes that ``load`` maps over."""
    from openeo_airflow.airflow import tasks

    sizing = tasks.size(_job_id())
    get_current_context()["ti"].xcom_push(key="sizing", value=sizing)
    return list(sizing["sources"])


@task
def load(node_id: str) -> str:
    from openeo_airflow.airflow import tasks

    return tasks.load(_job_id(), node_id)


@task
def transform(loaded: list[str]) -> str:
    from openeo_airflow.airflow import tasks

    return tasks.transform(_job_id())


@task
def save(result: str) -> list[str]:
    from openeo_airflow.airflow import tasks

    return tasks.save(_job_id())


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
    ) as dag:
        sized: Any = size()
        loaded: Any = load.expand(node_id=sized)
        transformed: Any = transform(loaded)
        save(transformed)
    return dag
