"""Failures of a stage that every engine (inline, spark-local, spark-k8s) reports the same way.

The batch DAG reacts to the class, not to the engine: a stage that ran out of memory is re-sized
and retried (issue 5, item 5); any other failure is not retried blindly.
"""

from __future__ import annotations


class StageOutOfMemory(Exception):
    """A stage was killed for memory: a container OOMKilled (exit code 137), an executor lost,
    a JVM ``OutOfMemoryError`` or a Python ``MemoryError``.

    ``component`` says where it happened (``"driver"``, ``"executor"`` or ``""`` when unknown),
    ``evidence`` quotes what gave it away, for the job's log.
    """

    def __init__(self, message: str, *, component: str = "", evidence: str = "") -> None:
        super().__init__(message)
        self.component = component
        self.evidence = evidence
