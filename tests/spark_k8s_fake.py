"""An in-memory Kubernetes namespace with SparkApplications and their pods, behind the two client
APIs the cncf.kubernetes provider uses (CustomObjectsApi, CoreV1Api), for tests/test_spark_k8s.py.

It understands equality-based label selectors, so the provider's own reattach query decides what
it finds.
"""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

from kubernetes.client import models as k8s


def matches(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes equality-based label selectors: k=v, k!=v, !k."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=")
            ok = labels.get(key) != value
        elif "=" in term:
            key, value = term.split("=")
            ok = labels.get(key) == value
        else:
            ok = term.lstrip("!") not in labels
        if not ok:
            return False
    return True


def pod(name: str, labels: dict[str, str], phase: str, *states: Any) -> k8s.V1Pod:
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name, namespace="openeo-jobs", labels=dict(labels)),
        spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="spark-kubernetes-driver")]),
        status=k8s.V1PodStatus(
            phase=phase,
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="spark-kubernetes-driver",
                    image="img",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=state,
                )
                for state in states
            ],
        ),
    )


def ended(reason: str, exit_code: int) -> k8s.V1ContainerState:
    return k8s.V1ContainerState(
        terminated=k8s.V1ContainerStateTerminated(reason=reason, exit_code=exit_code)
    )


class FakeCluster:
    """SparkApplications and their pods in one namespace, behind the two client APIs."""

    def __init__(self) -> None:
        self.apps: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, k8s.V1Pod] = {}
        self.app_state = "RUNNING"
        self.error_message = ""
        self.driver_log = ""
        # How the driver pod ends (the test's fixture applies it when the provider waits).
        self.final_phase = "Succeeded"
        self.final_states: tuple[Any, ...] = ()
        self.custom = mock.MagicMock(name="CustomObjectsApi()")
        self.custom.create_namespaced_custom_object.side_effect = self.create
        self.custom.get_namespaced_custom_object_status.side_effect = self.get_app
        self.custom.get_namespaced_custom_object.side_effect = self.get_app
        self.custom.delete_namespaced_custom_object.side_effect = self.delete
        self.core = mock.MagicMock(name="CoreV1Api")
        self.core.list_namespaced_pod.side_effect = lambda ns, label_selector="", **_: (
            k8s.V1PodList(
                items=[p for p in self.pods.values() if matches(label_selector, p.metadata.labels)]
            )
        )
        self.core.read_namespaced_pod.side_effect = lambda name, namespace, **_: self.pods[name]
        self.core.read_namespaced_pod_log.side_effect = lambda **_: self.driver_log

    def create(self, *, group: str, version: str, namespace: str, plural: str, body: dict) -> dict:
        assert (group, version, plural) == ("sparkoperator.k8s.io", "v1beta2", "sparkapplications")
        name = body["metadata"]["name"]
        self.apps[name] = copy.deepcopy(body)
        driver_labels = {**body["spec"]["driver"]["labels"], "spark-role": "driver"}
        self.pods[f"{name}-driver"] = pod(f"{name}-driver", driver_labels, "Running")
        return copy.deepcopy(body)

    def get_app(self, *, name: str, **_: Any) -> dict:
        state = {"state": self.app_state, "errorMessage": self.error_message}
        return {**self.apps[name], "status": {"applicationState": state}}

    def delete(self, *, name: str, **_: Any) -> None:
        self.apps.pop(name)
        for pod_name in [p for p in self.pods if p.startswith(name + "-")]:
            del self.pods[pod_name]

    def add_executor(self, app: str, *states: Any) -> None:
        labels = {**self.apps[app]["spec"]["executor"]["labels"], "spark-role": "executor"}
        self.pods[f"{app}-exec-1"] = pod(f"{app}-exec-1", labels, "Failed", *states)
