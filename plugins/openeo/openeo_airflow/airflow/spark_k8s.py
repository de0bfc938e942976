"""Run one stage's SparkApplication from inside an Airflow task (the spark-k8s engine's edge).

    from openeo_airflow.airflow.spark_k8s import run_spark_application
    from openeo_airflow.engine.errors import StageOutOfMemory

    @task
    def load(..., **context):
        manifest = build_spark_application(...)  # openeo_airflow.engine.spark_k8s
        try:
            run_spark_application(context, manifest, kubernetes_conn_id=settings.kubernetes_conn_id)
        except StageOutOfMemory:
            ...  # re-size and retry

``run_spark_application(context, manifest, *, kubernetes_conn_id)`` blocks until the application
has ended: it returns ``{"name", "namespace", "reattached"}`` when it succeeded, raises
``StageOutOfMemory`` when it was killed for memory, and re-raises the provider's error otherwise.

It drives the cncf.kubernetes provider's ``SparkKubernetesOperator`` (``template_spec=`` the
manifest as a native dict, ``reattach_on_restart``, ``delete_on_termination``, ``get_logs``), so
submission, log streaming, reattach and clean-up are the provider's. The provider labels the
driver with the task instance (dag, task, run, map index, try) and, on a later try of the same
task, follows a driver that is still running instead of submitting a second application.

What this module adds is the diagnosis: the provider deletes the application as soon as it has
ended, which takes the evidence of an out-of-memory kill with it. So the operator is subclassed to
read the application's status, the driver's and executors' container terminations and the tail of
the driver log just before that deletion (or after a failure at submission, which the provider
does not clean up; then this module deletes the application itself).
"""

from __future__ import annotations

import copy
import logging
from contextlib import suppress
from typing import Any

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.engine.spark_k8s import (
    APP_LABEL,
    DRIVER_CONTAINER,
    Termination,
    out_of_memory_evidence,
)

log = logging.getLogger(__name__)
LOG_TAIL_LINES = 300


def run_spark_application(
    context: Any,
    manifest: dict[str, Any],
    *,
    kubernetes_conn_id: str = "kubernetes_default",
    startup_timeout_seconds: int = 600,
) -> dict[str, Any]:
    """Submit (or reattach to) ``manifest`` and wait for it; see the module docstring."""
    operator = StageSparkOperator(
        task_id=f"{context['ti'].task_id}-spark",
        namespace=manifest["metadata"]["namespace"],
        # The provider adds labels and env to the body it is given: keep the caller's intact.
        template_spec=copy.deepcopy(manifest),
        kubernetes_conn_id=kubernetes_conn_id,
        reattach_on_restart=True,
        delete_on_termination=True,
        get_logs=True,
        # Our name is unique per try already, and the diagnosis needs to know it.
        random_name_suffix=False,
        deferrable=False,
        log_events_on_failure=True,
        startup_timeout_seconds=startup_timeout_seconds,
    )
    try:
        operator.execute(context)
    except Exception as exc:
        if operator.diagnosis is None:
            # A failure while submitting or waiting for the start: the provider did not clean up.
            operator.diagnose()
            with suppress(Exception):
                operator.launcher.delete_spark_job(spark_job_name=operator.name)
        evidence = operator.diagnosis
        if evidence is not None:
            component, quote = evidence
            where = f"the {component}" if component else "a container"
            raise StageOutOfMemory(
                f"SparkApplication {operator.name} ran out of memory in {where}: {quote}",
                component=component,
                evidence=quote,
            ) from exc
        raise
    return {
        "name": operator.name,
        "namespace": operator.namespace,
        "reattached": operator.reattached,
    }


class StageSparkOperator(SparkKubernetesOperator):
    """The provider's operator plus an out-of-memory diagnosis taken before the deletion."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.diagnosis: tuple[str, str] | None = None
        self.diagnosed = False
        self.reattached = False

    def find_spark_job(self, context: Any, exclude_checked: bool = True) -> Any:
        pod = super().find_spark_job(context, exclude_checked=exclude_checked)
        if pod is not None and self.pod is None:
            self.reattached = True
        return pod

    def process_pod_deletion(self, pod: Any, *, reraise: bool = True) -> Any:
        phase = getattr(getattr(pod, "status", None), "phase", None)
        if pod is not None and phase != "Succeeded":
            self.diagnose()
        return super().process_pod_deletion(pod, reraise=reraise)

    def diagnose(self) -> tuple[str, str] | None:
        """Read what the cluster still knows about the ended application (never raises)."""
        if self.diagnosed:
            return self.diagnosis
        self.diagnosed = True
        name = self.name or ""
        terminations: list[Termination] = []
        texts: list[str] = []
        with suppress(Exception):
            app = self.custom_obj_api.get_namespaced_custom_object(
                group="sparkoperator.k8s.io",
                version="v1beta2",
                namespace=self.namespace,
                plural="sparkapplications",
                name=name,
            )
            state = (app.get("status") or {}).get("applicationState") or {}
            texts.append(str(state.get("errorMessage") or ""))
        with suppress(Exception):
            driver = self.client.read_namespaced_pod(
                name=f"{name}-driver", namespace=self.namespace
            )
            terminations += _terminations(driver, "driver")
        with suppress(Exception):
            executors = self.client.list_namespaced_pod(
                self.namespace, label_selector=f"{APP_LABEL}={name},spark-role=executor"
            )
            for pod in executors.items:
                terminations += _terminations(pod, "executor")
        with suppress(Exception):
            texts.append(
                str(
                    self.client.read_namespaced_pod_log(
                        name=f"{name}-driver",
                        namespace=self.namespace,
                        container=DRIVER_CONTAINER,
                        tail_lines=LOG_TAIL_LINES,
                    )
                )
            )
        self.diagnosis = out_of_memory_evidence(terminations, texts)
        if self.diagnosis:
            log.warning("SparkApplication %s ran out of memory: %s", name, self.diagnosis[1])
        return self.diagnosis


def _terminations(pod: Any, component: str) -> list[Termination]:
    """The ended containers of a pod (kubernetes client model), plus an eviction of the pod."""
    found: list[Termination] = []
    status = pod.status
    if status is None:
        return found
    if status.reason == "Evicted":
        found.append(Termination(component, "Evicted", None, status.message or ""))
    for container in status.container_statuses or []:
        ended = container.state.terminated if container.state else None
        if ended is None and container.last_state is not None:
            ended = container.last_state.terminated
        if ended is not None:
            found.append(
                Termination(component, ended.reason or "", ended.exit_code, ended.message or "")
            )
    return found
