"""Log records of our own code during a stage become the job's openEO log entries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from openeo_airflow.jobs.registry import JobRegistry

_LEVELS = {
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "error",
}


class JobLogHandler(logging.Handler):
    def __init__(self, registry: JobRegistry, job_id: str, stage: str) -> None:
        super().__init__(level=logging.INFO)
        self._registry = registry
        self._job_id = job_id
        self._stage = stage

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = _LEVELS.get(record.levelno, "info")
            self._registry.add_log(self._job_id, level, record.getMessage(), stage=self._stage)
        except Exception:  # a log write must never fail the stage
            self.handleError(record)


@contextmanager
def job_logging(registry: JobRegistry, job_id: str, stage: str) -> Iterator[None]:
    logger = logging.getLogger("openeo_airflow")
    handler = JobLogHandler(registry, job_id, stage)
    previous = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
