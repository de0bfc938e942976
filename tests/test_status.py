"""Mapping of Airflow DAG run states onto openEO job statuses."""

import pytest

from openeo_airflow.core.models import JobStatus as S
from openeo_airflow.jobs.status import status_from_run

CASES = [
    # run state, current job status, expected job status
    ("queued", S.QUEUED, S.QUEUED),
    ("running", S.QUEUED, S.QUEUED),  # the run runs before the size task marks the job
    ("running", S.RUNNING, S.RUNNING),
    ("success", S.RUNNING, S.FINISHED),
    ("success", S.QUEUED, S.FINISHED),
    ("failed", S.RUNNING, S.ERROR),
    ("failed", S.QUEUED, S.ERROR),
    ("failed", S.CANCELED, S.CANCELED),  # a cancel marks the run failed
    ("success", S.ERROR, S.ERROR),  # final statuses never change
    ("running", S.FINISHED, S.FINISHED),
    (None, S.RUNNING, S.ERROR),  # the run was deleted outside openEO
    (None, S.CREATED, S.CREATED),
    ("running", S.CREATED, S.CREATED),
    ("queued", S.RUNNING, S.RUNNING),  # never backwards
    ("up_for_retry", S.RUNNING, S.RUNNING),  # unknown states change nothing
]


@pytest.mark.parametrize(("run_state", "current", "expected"), CASES)
def test_status_from_run(run_state: str | None, current: S, expected: S) -> None:
    assert status_from_run(run_state, current) is expected
