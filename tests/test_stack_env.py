"""The Airflow settings `openeo-airflow up` gives its components."""

from pathlib import Path

import pytest

from openeo_airflow.cli.stack import SCHEDULER_IDLE_SLEEP, StackConfig, stack_env


def test_the_scheduler_sleeps_briefly_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", raising=False)
    env = stack_env(StackConfig(home=tmp_path))
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == SCHEDULER_IDLE_SLEEP
    assert float(SCHEDULER_IDLE_SLEEP) < 1  # Airflow's default: a second per step of a job


def test_an_operators_idle_sleep_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME", "2")
    env = stack_env(StackConfig(home=tmp_path))
    assert env["AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME"] == "2"
