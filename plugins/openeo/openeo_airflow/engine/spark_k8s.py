"""SparkApplication manifests for the spark-k8s engine, and how to read their failures (pure).

One SparkApplication (kubeflow spark-operator, ``sparkoperator.k8s.io/v1beta2``) runs one stage
of one job; the Airflow task that submits it lives in ``openeo_airflow.airflow.spark_k8s``::

    config = SparkK8sConfig.from_settings(settings)
    manifest = build_spark_application(
        config, job_id=job_id, stage="load", node="load1", try_number=ti.try_number,
        workspace=str(JobWorkspace.for_job(settings.jobs_dir, job_id).root),
        resources=resources,  # sizing.resources.Resources of this stage
    )

The manifest is a plain dict with integers as integers: hand it to the operator as a native dict,
never through Jinja (which would turn ``cores: 2`` into ``"2"`` and the CRD rejects that).

Decisions:
- The driver runs ``local:///opt/openeo/entrypoint.py`` (``images/spark/entrypoint.py``), a
  launcher that calls ``openeo_airflow.engine.entrypoint.main()``. Its path does not depend on
  the Python minor version of the image's venv (a site-packages path would), and running it as a
  script puts only ``/opt/openeo`` on ``sys.path[0]``, not a folder of our package whose module
  names could shadow others.
- Names are unique per job, stage, source node and try number (a retry with a larger size must
  never collide with the previous try's application), at most 56 characters: the operator
  derives ``<name>-ui-svc`` from it, and a Service name is limited to 63.
- Labels (``openeo-airflow/...``) on the application and on its driver and executor pods name the
  job, stage, node and try. The provider's reattach adds its own Airflow labels (dag, task, run,
  map index) at submit time and finds a still running driver by those; ours let anyone list or
  clean up a job's applications and let the failure diagnosis find the executor pods.
- A transform whose graph calls ``run_udf`` gets a UDF container in the driver and executor
  pods (``udf_sidecars``, ``UdfSidecar``): the UDF image runs ``udf_service`` on a Unix socket
  in an ``emptyDir`` shared with the Spark container, whose env switches ``run_udf`` to that
  service, so the Spark container runs no user code. It is a Kubernetes native sidecar (an init
  container with ``restartPolicy: Always``, Kubernetes >= 1.29): it starts before Spark, its
  startup probe holds Spark back until the socket exists, and it ends with the pod instead of
  keeping a finished executor alive. Its own CPU and memory limits (from the stage's sizing),
  the Spark image's uid (so both sides read and write the exchange folders without group
  tricks), a read-only root, no capabilities, no env from the deployment's secrets, and an
  empty volume over the service-account token mount keep the user's code away from the pod's
  credentials.
- Executor pods are kept after they end (``executor.deleteOnTermination: false``) so that an
  executor killed for memory can still be seen as OOMKilled; they hold no resources once
  terminated and go with the application, which the task deletes (``timeToLiveSeconds`` is the
  safety net for applications nobody deleted).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from openeo_airflow.core.settings import Settings
from openeo_airflow.sizing.model import StageSize
from openeo_airflow.sizing.resources import Resources, overhead_mb

API_VERSION = "sparkoperator.k8s.io/v1beta2"
KIND = "SparkApplication"
STAGES = ("load", "transform", "save")
# Must equal the Spark version of the image (images/spark/Dockerfile, tests/test_deploy_files.py).
SPARK_VERSION = "4.3.0"
LAUNCHER = "local:///opt/openeo/entrypoint.py"
PYTHON = "/opt/openeo/venv/bin/python"
DRIVER_CONTAINER = "spark-kubernetes-driver"
WORKSPACE_VOLUME = "openeo-workspace"
LABEL_PREFIX = "openeo-airflow/"
POOL_LABEL = "openeo.org/pool"  # the node label of pools, as in helm-values/overlays
APP_LABEL = LABEL_PREFIX + "app"
MAX_NAME = 63 - len("-ui-svc")
MAX_LABEL_VALUE = 63
# The UDF sidecar (see the module docstring).
UDF_CONTAINER = "openeo-udf"
UDF_VOLUME = "openeo-udf"
UDF_DIR = "/var/run/openeo-udf"
UDF_SOCKET = UDF_DIR + "/udf.sock"
UDF_SERVICE = "openeo_airflow.processes.udf_service"
UDF_PYTHON = "/opt/openeo/venv/bin/python"  # images/udf/Dockerfile
NO_TOKEN_VOLUME = "openeo-udf-no-token"
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
SPARK_UID = 185  # images/spark/Dockerfile; the UDF image's user is the same uid
# One UDF run's address-space limit: the worker needs 768 MiB (measured) to import numpy,
# pandas, xarray and openeo.udf; the data comes on top, counted three times (the cube, the
# user's result, the copy written back).
UDF_RUN_FLOOR_MB = 1024
UDF_RUN_BASE_MB = 768
UDF_DATA_WEIGHT = 3.0
UDF_SERVICE_MB = 64  # the service itself: the standard library only


@dataclass(frozen=True)
class SparkK8sConfig:
    """What every SparkApplication of this deployment shares (from ``Settings``)."""

    namespace: str
    image: str
    service_account: str
    workspace_root: str  # the workspace path, the same inside Spark pods as on Airflow workers
    workspace_pvc: str = ""  # mounted at workspace_root; empty: the workspace is not a volume
    gdal_profile: str = "local"
    credentials_secret: str = ""  # a Secret whose keys become env vars (object-store keys)
    driver_pool: str = ""  # node pool (POOL_LABEL) of drivers; empty: anywhere
    executor_pool: str = ""  # node pool of executors (tainted for Spark, autoscaled)
    udf_image: str = "openeo-airflow/udf:latest"
    spark_version: str = SPARK_VERSION
    image_pull_policy: str = "IfNotPresent"
    time_to_live_seconds: int = 3600

    @classmethod
    def from_settings(cls, settings: Settings) -> SparkK8sConfig:
        # getattr: fields that Settings may gain later without this module changing.
        return cls(
            namespace=settings.k8s_namespace,
            image=settings.spark_image,
            service_account=settings.spark_service_account,
            workspace_root=str(settings.workspace),
            workspace_pvc=settings.workspace_pvc,
            gdal_profile=settings.gdal_profile,
            credentials_secret=settings.spark_credentials_secret,
            driver_pool=settings.spark_driver_pool,
            executor_pool=settings.spark_executor_pool,
            udf_image=settings.udf_image,
            spark_version=getattr(settings, "spark_version", SPARK_VERSION),
        )


@dataclass(frozen=True)
class UdfSidecar:
    """The UDF container of one pod: per-run memory limit, runs at once, cores."""

    run_memory_mb: int
    workers: int
    cores: int

    @property
    def memory_mb(self) -> int:
        return self.workers * self.run_memory_mb + UDF_SERVICE_MB


@dataclass(frozen=True)
class UdfSidecars:
    driver: UdfSidecar
    executor: UdfSidecar


def udf_run_memory_mb(data_mb: float) -> int:
    return max(UDF_RUN_FLOOR_MB, UDF_RUN_BASE_MB + math.ceil(UDF_DATA_WEIGHT * data_mb))


def udf_sidecars(stage: str, udfs: int, stage_size: StageSize | None) -> UdfSidecars | None:
    """The UDF containers of a stage's pods, or None when the stage runs no UDF (pure).

    Only the transform evaluates the graph. Executors run a tile per core, each tile's UDF in
    its own run; the driver evaluates the graph's global parts (a ``run_udf`` on the whole
    cube) one at a time, on its predicted peak.
    """
    if stage != "transform" or udfs <= 0:
        return None
    r = stage_size.resources if stage_size else Resources()
    driver_mb = stage_size.peak_driver_mb if stage_size else 0.0
    tile_mb = stage_size.peak_tile_mb if stage_size else 0.0
    return UdfSidecars(
        driver=UdfSidecar(udf_run_memory_mb(driver_mb), 1, r.driver_cores),
        executor=UdfSidecar(udf_run_memory_mb(tile_mb), r.executor_cores, r.executor_cores),
    )


def build_spark_application(
    config: SparkK8sConfig,
    *,
    job_id: str,
    stage: str,
    workspace: str,
    resources: Resources,
    try_number: int,
    node: str | None = None,
    udf: UdfSidecars | None = None,
) -> dict[str, Any]:
    """The SparkApplication that runs ``stage`` (of source ``node`` for a load) of one job.

    ``udf`` (from ``udf_sidecars``) adds the UDF containers and their shared volume.

    ``workspace`` is the job's workspace directory as the stage entrypoint sees it. Dynamic
    allocation (with shuffle tracking: there is no external shuffle service) is on when the
    sizing allows more executors than it starts with; otherwise the executor count is fixed.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {', '.join(STAGES)}")
    if try_number < 1:
        raise ValueError("try_number starts at 1")
    name = application_name(job_id, stage, node, try_number)
    labels = application_labels(job_id, stage, node, try_number, name)
    arguments = ["--workspace", workspace, "--stage", stage]
    if node is not None:
        arguments += ["--node", node]
    driver = {
        "cores": resources.driver_cores,
        "memory": _mib(resources.driver_memory_mb),
        "memoryOverhead": _mib(overhead_mb(resources.driver_memory_mb)),
        "serviceAccount": config.service_account,
        **_pod_common(config, labels),
    }
    executor: dict[str, Any] = {
        "cores": resources.executor_cores,
        "memory": _mib(resources.executor_memory_mb),
        "memoryOverhead": _mib(resources.executor_memory_overhead_mb),
        "deleteOnTermination": False,
        **_pod_common(config, labels),
    }
    # A driver evicted by a scale-down loses the whole stage: the autoscaler must leave it.
    driver["annotations"] = {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    if config.driver_pool:
        driver["nodeSelector"] = {POOL_LABEL: config.driver_pool}
    if config.executor_pool:
        executor["nodeSelector"] = {POOL_LABEL: config.executor_pool}
        executor["tolerations"] = [
            {
                "key": POOL_LABEL,
                "operator": "Equal",
                "value": config.executor_pool,
                "effect": "NoSchedule",
            }
        ]
    spec: dict[str, Any] = {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "mainApplicationFile": LAUNCHER,
        "arguments": arguments,
        "sparkVersion": config.spark_version,
        "restartPolicy": {"type": "Never"},
        "timeToLiveSeconds": config.time_to_live_seconds,
        "sparkConf": _spark_conf(resources),
        "driver": driver,
        "executor": executor,
    }
    if resources.max_executors > resources.executors:
        spec["dynamicAllocation"] = {
            "enabled": True,
            "shuffleTrackingEnabled": True,
            "initialExecutors": resources.executors,
            "minExecutors": resources.executors,
            "maxExecutors": resources.max_executors,
        }
    else:
        executor["instances"] = resources.executors
    if config.workspace_pvc:
        spec["volumes"] = [
            {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": config.workspace_pvc}}
        ]
    if udf is not None:
        _add_udf_sidecar(driver, config, udf.driver)
        _add_udf_sidecar(executor, config, udf.executor)
        spec["volumes"] = [
            *spec.get("volumes", []),
            {"name": UDF_VOLUME, "emptyDir": {}},
            {"name": NO_TOKEN_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, "namespace": config.namespace, "labels": dict(labels)},
        "spec": spec,
    }


def _mib(mb: int) -> str:
    return f"{int(mb)}m"


def _spark_conf(resources: Resources) -> dict[str, str]:
    partitions = str(max(1, resources.partitions))
    return {
        "spark.default.parallelism": partitions,
        "spark.sql.shuffle.partitions": partitions,
        # The image's venv, also when Spark's own PYSPARK_PYTHON handling changes.
        "spark.pyspark.python": PYTHON,
        "spark.pyspark.driver.python": PYTHON,
    }


def _pod_common(config: SparkK8sConfig, labels: Mapping[str, str]) -> dict[str, Any]:
    """Labels, env and mounts shared by the driver and the executors (each gets its own copy)."""
    env = [
        {"name": "OPENEO_AIRFLOW_GDAL_PROFILE", "value": config.gdal_profile},
        {"name": "OPENEO_AIRFLOW_WORKSPACE", "value": config.workspace_root},
    ]
    common: dict[str, Any] = {"labels": dict(labels), "env": env}
    if config.credentials_secret:
        common["envFrom"] = [{"secretRef": {"name": config.credentials_secret}}]
    if config.workspace_pvc:
        common["volumeMounts"] = [{"name": WORKSPACE_VOLUME, "mountPath": config.workspace_root}]
    return common


def _add_udf_sidecar(pod: dict[str, Any], config: SparkK8sConfig, sidecar: UdfSidecar) -> None:
    """The UDF container in a driver or executor pod, and the Spark container's side of it."""
    pod["env"] += [
        {"name": "OPENEO_AIRFLOW_UDF_RUNNER", "value": "service"},
        {"name": "OPENEO_AIRFLOW_UDF_SOCKET", "value": UDF_SOCKET},
    ]
    pod["volumeMounts"] = [
        *pod.get("volumeMounts", []),
        {"name": UDF_VOLUME, "mountPath": UDF_DIR},
    ]
    memory = _mib(sidecar.memory_mb)
    resources = {"cpu": str(sidecar.cores), "memory": memory}
    pod["initContainers"] = [
        {
            "name": UDF_CONTAINER,
            "image": config.udf_image,
            "imagePullPolicy": config.image_pull_policy,
            "restartPolicy": "Always",
            "command": [UDF_PYTHON, "-I", "-m", UDF_SERVICE],
            "args": [
                "--socket",
                UDF_SOCKET,
                "--max-memory-mb",
                str(sidecar.run_memory_mb),
                "--workers",
                str(sidecar.workers),
            ],
            "resources": {"requests": dict(resources), "limits": dict(resources)},
            "startupProbe": {
                "exec": {"command": ["test", "-S", UDF_SOCKET]},
                "periodSeconds": 1,
                "failureThreshold": 120,
            },
            "securityContext": {
                "runAsUser": SPARK_UID,
                "runAsGroup": SPARK_UID,
                "runAsNonRoot": True,
                "allowPrivilegeEscalation": False,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["ALL"]},
            },
            "volumeMounts": [
                {"name": UDF_VOLUME, "mountPath": UDF_DIR},
                {"name": NO_TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
            ],
        }
    ]


# --- names and labels ---------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def application_name(job_id: str, stage: str, node: str | None, try_number: int) -> str:
    """``<stage>-<job>[-<node>]-<hash>-t<try>``: readable, DNS-1035, unique through the hash
    (two node ids may slug alike), at most ``MAX_NAME`` characters."""
    suffix = f"-{_digest(job_id, stage, node or '', str(try_number))}-t{try_number}"
    middle = "-".join(p for p in (_slug(job_id), _slug(node or "")) if p)
    room = MAX_NAME - len(stage) - len(suffix) - 1
    middle = middle[:room].strip("-")
    # The provider finds the application of a driver pod by removing "-driver" from the pod's name.
    middle = middle.replace("driver", "drv")
    return f"{stage}-{middle}{suffix}" if middle else f"{stage}{suffix}"


def label_value(text: str) -> str:
    """A valid label value for any text: kept when valid, else cleaned and made unique."""
    if len(text) <= MAX_LABEL_VALUE and re.fullmatch(
        r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?", text
    ):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: MAX_LABEL_VALUE - 9].strip("-_.")
    return f"{cleaned}-{_digest(text)}" if cleaned else _digest(text)


def application_labels(
    job_id: str, stage: str, node: str | None, try_number: int, name: str
) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/managed-by": "openeo-airflow",
        APP_LABEL: name,
        LABEL_PREFIX + "job-id": label_value(job_id),
        LABEL_PREFIX + "stage": stage,
        LABEL_PREFIX + "try": str(try_number),
    }
    if node is not None:
        labels[LABEL_PREFIX + "node"] = label_value(node)
    return labels


# --- failures -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Termination:
    """How one container of the application ended (from its pod's status)."""

    component: str  # "driver" or "executor"
    reason: str = ""  # e.g. "OOMKilled", "Error", "Evicted"
    exit_code: int | None = None
    message: str = ""


# Text that only an out-of-memory failure writes: JVM, Python, libc, C++, Spark's executor loss.
_OOM_TEXT = re.compile(
    r"java\.lang\.OutOfMemoryError|\bMemoryError\b|OOMKilled|Cannot allocate memory"
    r"|std::bad_alloc|ExecutorLostFailure|possible container OOM"
    r"|exit code (137|52)\b|ExitCode: (137|52)\b",
)
# 137: SIGKILL (the kernel's OOM killer). 52: Spark's exit code for an OutOfMemoryError, also the
# one the stage entrypoint (engine/entrypoint.py OOM_EXIT) exits with after a MemoryError, which
# spark-submit passes on as the driver container's exit code.
OOM_EXIT_CODES = (137, 52)


def out_of_memory_evidence(
    terminations: Iterable[Termination] = (),
    texts: Iterable[str] = (),
) -> tuple[str, str] | None:
    """``(component, evidence)`` when a failed application ran out of memory, else None.

    ``terminations`` come from the driver and executor pods, ``texts`` from the application's
    ``status.applicationState.errorMessage`` and the tail of the driver log. Exit code 137
    (SIGKILL) counts as memory: the kernel's OOM killer is what sends it to a Spark container in
    practice, and a wrongly re-sized retry costs less than a job failed for good. So does 52
    (``OOM_EXIT_CODES``). A lost executor
    counts too: Spark gives up on it only after several task attempts each lost their executor.
    """
    for term in terminations:
        memory_eviction = term.reason == "Evicted" and "memory" in term.message.lower()
        if term.reason == "OOMKilled" or term.exit_code in OOM_EXIT_CODES or memory_eviction:
            detail = f"{term.component} container: reason={term.reason or '-'}"
            return term.component, f"{detail}, exit code={term.exit_code}"
    for text in texts:
        for line in text.splitlines():
            match = _OOM_TEXT.search(line)
            if match:
                component = "executor" if "Executor" in line or "executor" in line else ""
                return component, line.strip()[:500]
    return None
