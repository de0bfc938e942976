"""The batch DAG parses in Airflow's own DagBag and has the fixed shape of DESIGN §2."""

from pathlib import Path

from airflow.dag_processing.dagbag import DagBag

DAGS = Path(__file__).resolve().parents[1] / "dags"


def test_batch_dag_parses_with_its_shape() -> None:
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags.get("openeo_batch_job")
    assert dag is not None
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "")
    tasks = {t.task_id: t for t in dag.tasks}
    assert set(tasks) == {"size", "load", "transform", "save"}
    assert tasks["size"].downstream_task_ids == {"load"}
    assert tasks["load"].downstream_task_ids == {"transform"}
    assert tasks["transform"].downstream_task_ids == {"save"}
    assert tasks["save"].downstream_task_ids == set()
