"""SparkApplication manifests (against the spark-operator CRD) and the spark-k8s operator path.

The operator path is tested the way the cncf.kubernetes provider tests itself: the Kubernetes
clients are replaced (here by a small in-memory cluster that understands label selectors), the
provider's real SparkKubernetesOperator runs against them, and the tests assert on the body it
sends and on what it deletes.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any
from unittest import mock

import jsonschema
import pytest
import yaml
from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator
from airflow.providers.common.compat.sdk import AirflowException
from kubernetes.client import models as k8s

from openeo_airflow.airflow.spark_k8s import run_spark_application
from openeo_airflow.core.settings import load_settings
from openeo_airflow.engine.errors import StageOutOfMemory
from openeo_airflow.engine.spark_k8s import (
    APP_LABEL,
    LAUNCHER,
    MAX_NAME,
    NO_TOKEN_VOLUME,
    OOM_EXIT_CODES,
    TOKEN_DIR,
    UDF_DIR,
    UDF_PYTHON,
    UDF_SOCKET,
    UDF_VOLUME,
    SparkK8sConfig,
    Termination,
    UdfSidecars,
    application_name,
    build_spark_application,
    label_value,
    out_of_memory_evidence,
    udf_sidecars,
)
from openeo_airflow.sizing.model import StageSize
from openeo_airflow.sizing.resources import Resources
from tests.spark_k8s_fake import FakeCluster, ended, pod

CRD = Path(__file__).resolve().parents[1].parent / "shared" / "schemas"
CRD_FILE = CRD / "spark-operator-sparkapplications-crd.yaml"
JOB = "j-0123456789abcdef0123"
CONFIG = SparkK8sConfig(
    namespace="openeo-jobs",
    image="registry.example.org/openeo-airflow/spark:0.1.0",
    service_account="openeo-spark",
    workspace_root="/opt/openeo/workspace",
    workspace_pvc="openeo-workspace",
    gdal_profile="cloudferro",
)
RESOURCES = {
    "default": Resources(),
    "static": Resources(
        driver_cores=2,
        driver_memory_mb=2048,
        executor_cores=4,
        executor_memory_mb=6144,
        executor_memory_overhead_mb=2458,
        executors=3,
        max_executors=3,
        partitions=48,
    ),
    "dynamic": Resources(executors=2, max_executors=16, partitions=256),
}
STAGE_NODES = [("load", "loadcollection1"), ("load", "load2"), ("transform", None), ("save", None)]


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    if not CRD_FILE.is_file():
        pytest.skip(f"spark-operator CRD not available at {CRD_FILE}")
    crd = yaml.safe_load(CRD_FILE.read_text(encoding="utf-8"))
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1beta2"]
    return version["schema"]["openAPIV3Schema"]


def manifest(stage: str = "load", node: str | None = "loadcollection1", **kw: Any) -> dict:
    config = kw.pop("config", CONFIG)
    args: dict[str, Any] = {
        "job_id": JOB,
        "stage": stage,
        "node": node,
        "workspace": f"/opt/openeo/workspace/jobs/{JOB}",
        "resources": RESOURCES["default"],
        "try_number": 1,
    }
    args.update(kw)
    return build_spark_application(config, **args)


# --- schema checks --------------------------------------------------------------------------

METADATA_KEYS = {"name", "namespace", "labels", "annotations"}


def unknown_fields(instance: Any, node: dict[str, Any], path: str = "") -> list[str]:
    """Paths in ``instance`` that the structural schema does not describe, i.e. fields the API
    server would drop without a word. ``x-kubernetes-preserve-unknown-fields`` allows unknown keys
    at that node only; known keys below it are still checked."""
    problems: list[str] = []
    if isinstance(instance, dict):
        if path == "metadata":  # ObjectMeta: validated by the API server, not by the CRD
            return [f"metadata.{k}" for k in instance if k not in METADATA_KEYS]
        properties = node.get("properties", {})
        additional = node.get("additionalProperties")
        preserve = node.get("x-kubernetes-preserve-unknown-fields", False)
        for key, value in instance.items():
            child = f"{path}.{key}" if path else key
            if key in properties:
                problems += unknown_fields(value, properties[key], child)
            elif isinstance(additional, dict):
                problems += unknown_fields(value, additional, child)
            elif not (additional is True or preserve):
                problems.append(child)
    elif isinstance(instance, list):
        for i, item in enumerate(instance):
            problems += unknown_fields(item, node.get("items", {}), f"{path}[{i}]")
    return problems


def assert_valid(body: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(schema).validate(body)
    assert unknown_fields(body, schema) == []


def test_unknown_field_check_catches_typos(schema: dict[str, Any]) -> None:
    body = manifest()
    assert unknown_fields(body, schema) == []
    typo = copy.deepcopy(body)
    typo["spec"]["executor"]["memoryOverheads"] = "512m"
    typo["spec"]["dynamicAlocation"] = {"enabled": True}
    typo["spec"]["driver"]["env"][0]["valu"] = "x"
    typo["metadata"]["label"] = {}
    assert sorted(unknown_fields(typo, schema)) == [
        "metadata.label",
        "spec.driver.env[0].valu",
        "spec.dynamicAlocation",
        "spec.executor.memoryOverheads",
    ]
    # The pod template preserves unknown fields (a whole PodSpec), but only there.
    template = copy.deepcopy(body)
    template["spec"]["executor"]["template"] = {"spec": {"anything": 1}}
    assert unknown_fields(template, schema) == []
    # jsonschema alone accepts the typo: that is why the second check exists.
    jsonschema.Draft7Validator(schema).validate(typo)


@pytest.mark.parametrize("sizing", sorted(RESOURCES))
@pytest.mark.parametrize(("stage", "node"), STAGE_NODES)
def test_manifest_validates_against_the_crd(
    schema: dict[str, Any], stage: str, node: str | None, sizing: str
) -> None:
    body = manifest(stage, node, resources=RESOURCES[sizing], try_number=2)
    assert_valid(body, schema)
    # Through XCom/JSON and back nothing changes type (integers stay integers).
    assert json.loads(json.dumps(body)) == body


@pytest.mark.parametrize(
    "config",
    [
        CONFIG,
        SparkK8sConfig("ns", "img", "sa", "/ws"),  # no PVC, no secret
        SparkK8sConfig("ns", "img", "sa", "/ws", credentials_secret="s3-keys"),
    ],
)
def test_optional_volume_and_secret_validate(
    schema: dict[str, Any], config: SparkK8sConfig
) -> None:
    body = manifest(config=config)
    assert_valid(body, schema)
    spec = body["spec"]
    assert ("volumes" in spec) == bool(config.workspace_pvc)
    for role in ("driver", "executor"):
        assert ("volumeMounts" in spec[role]) == bool(config.workspace_pvc)
        env_from = spec[role].get("envFrom")
        expected = [{"secretRef": {"name": "s3-keys"}}] if config.credentials_secret else None
        assert env_from == expected


def test_pools_and_the_autoscaler_validate(schema: dict[str, Any]) -> None:
    config = SparkK8sConfig("ns", "img", "sa", "/ws", driver_pool="core", executor_pool="spark")
    body = manifest(config=config)
    assert_valid(body, schema)
    driver, executor = body["spec"]["driver"], body["spec"]["executor"]
    assert driver["annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert driver["nodeSelector"] == {"openeo.org/pool": "core"}
    assert executor["nodeSelector"] == {"openeo.org/pool": "spark"}
    assert executor["tolerations"] == [
        {"key": "openeo.org/pool", "operator": "Equal", "value": "spark", "effect": "NoSchedule"}
    ]
    plain = manifest(config=SparkK8sConfig("ns", "img", "sa", "/ws"))["spec"]
    assert "nodeSelector" not in plain["driver"] and "tolerations" not in plain["executor"]


def test_integers_are_integers() -> None:
    spec = manifest(resources=RESOURCES["static"])["spec"]
    for value in (
        spec["driver"]["cores"],
        spec["executor"]["cores"],
        spec["executor"]["instances"],
        spec["timeToLiveSeconds"],
    ):
        assert type(value) is int
    dynamic = manifest(resources=RESOURCES["dynamic"])["spec"]["dynamicAllocation"]
    assert all(
        type(dynamic[k]) is int for k in ("initialExecutors", "minExecutors", "maxExecutors")
    )
    assert all(type(v) is str for v in manifest()["spec"]["sparkConf"].values())


# --- manifest content -----------------------------------------------------------------------


def test_static_resources() -> None:
    spec = manifest("transform", None, resources=RESOURCES["static"])["spec"]
    assert spec["type"] == "Python" and spec["pythonVersion"] == "3" and spec["mode"] == "cluster"
    assert spec["mainApplicationFile"] == LAUNCHER
    assert spec["restartPolicy"] == {"type": "Never"}
    assert spec["driver"]["cores"] == 2
    assert spec["driver"]["memory"] == "2048m"
    assert spec["driver"]["memoryOverhead"] == "819m"  # 40 % of the driver memory
    assert spec["executor"] == spec["executor"] | {
        "cores": 4,
        "memory": "6144m",
        "memoryOverhead": "2458m",
        "instances": 3,
    }
    assert "dynamicAllocation" not in spec
    assert spec["sparkConf"]["spark.default.parallelism"] == "48"
    assert spec["sparkConf"]["spark.sql.shuffle.partitions"] == "48"
    assert spec["driver"]["serviceAccount"] == "openeo-spark"


def test_dynamic_allocation_with_shuffle_tracking() -> None:
    spec = manifest(resources=RESOURCES["dynamic"])["spec"]
    assert spec["dynamicAllocation"] == {
        "enabled": True,
        "shuffleTrackingEnabled": True,
        "initialExecutors": 2,
        "minExecutors": 2,
        "maxExecutors": 16,
    }
    assert "instances" not in spec["executor"]


@pytest.mark.parametrize(("stage", "node"), STAGE_NODES)
def test_arguments_env_and_mounts(stage: str, node: str | None) -> None:
    spec = manifest(stage, node)["spec"]
    expected = ["--workspace", f"/opt/openeo/workspace/jobs/{JOB}", "--stage", stage]
    assert spec["arguments"] == expected + (["--node", node] if node else [])
    for role in ("driver", "executor"):
        env = {e["name"]: e["value"] for e in spec[role]["env"]}
        assert env["OPENEO_AIRFLOW_GDAL_PROFILE"] == "cloudferro"
        assert env["OPENEO_AIRFLOW_WORKSPACE"] == "/opt/openeo/workspace"
        assert spec[role]["volumeMounts"] == [
            {"name": "openeo-workspace", "mountPath": "/opt/openeo/workspace"}
        ]
    assert spec["volumes"] == [
        {"name": "openeo-workspace", "persistentVolumeClaim": {"claimName": "openeo-workspace"}}
    ]


def test_driver_and_executor_do_not_share_mutable_parts() -> None:
    spec = manifest()["spec"]
    spec["driver"]["env"].append({"name": "X", "value": "1"})
    spec["driver"]["labels"]["x"] = "1"
    assert len(spec["executor"]["env"]) == 2 and "x" not in spec["executor"]["labels"]


def test_labels_name_the_job_stage_node_and_try() -> None:
    body = manifest("load", "loadcollection1", try_number=3)
    labels = body["metadata"]["labels"]
    assert labels["openeo-airflow/job-id"] == JOB
    assert labels["openeo-airflow/stage"] == "load"
    assert labels["openeo-airflow/node"] == "loadcollection1"
    assert labels["openeo-airflow/try"] == "3"
    assert labels[APP_LABEL] == body["metadata"]["name"]
    assert body["spec"]["driver"]["labels"] == labels == body["spec"]["executor"]["labels"]
    assert "openeo-airflow/node" not in manifest("save", None)["metadata"]["labels"]


DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def test_names_are_unique_short_and_dns_safe() -> None:
    names = set()
    for stage, node in [*STAGE_NODES, ("load", "Load 1"), ("load", "load-1"), ("load", "LOAD_1")]:
        for try_number in (1, 2, 11):
            name = application_name(JOB, stage, node, try_number)
            assert DNS_1035.fullmatch(name) and len(name) <= MAX_NAME, name
            names.add(name)
    assert len(names) == (len(STAGE_NODES) + 3) * 3
    long = application_name("job" * 40, "transform", "n" * 80 + "driver", 123)
    assert len(long) <= MAX_NAME and long.endswith("-t123") and "-driver" not in long
    assert DNS_1035.fullmatch(application_name("___", "save", "!!", 1))


@pytest.mark.parametrize("text", ["load1", "a b/c", "x" * 100, "-edge_", "ünïcode", ""])
def test_label_values_are_valid(text: str) -> None:
    value = label_value(text)
    assert LABEL_VALUE.fullmatch(value) and len(value) <= 63
    assert label_value("other" + text) != value


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="stage"):
        manifest("reduce")
    with pytest.raises(ValueError, match="try_number"):
        manifest(try_number=0)


def test_config_from_settings(tmp_path: Path) -> None:
    settings = load_settings(
        {
            "OPENEO_AIRFLOW_HOME": str(tmp_path),
            "OPENEO_AIRFLOW_WORKSPACE": "/opt/openeo/workspace",
            "OPENEO_AIRFLOW_K8S_NAMESPACE": "jobs",
            "OPENEO_AIRFLOW_SPARK_IMAGE": "img:1",
            "OPENEO_AIRFLOW_SPARK_SERVICE_ACCOUNT": "sa",
            "OPENEO_AIRFLOW_WORKSPACE_PVC": "pvc",
            "OPENEO_AIRFLOW_GDAL_PROFILE": "cloudferro",
            "OPENEO_AIRFLOW_SPARK_CREDENTIALS_SECRET": "eodata",
            "OPENEO_AIRFLOW_SPARK_EXECUTOR_POOL": "spark",
        }
    )
    config = SparkK8sConfig.from_settings(settings)
    assert config == SparkK8sConfig(
        namespace="jobs",
        image="img:1",
        service_account="sa",
        workspace_root="/opt/openeo/workspace",
        workspace_pvc="pvc",
        gdal_profile="cloudferro",
        credentials_secret="eodata",
        executor_pool="spark",
    )


# --- out-of-memory classification ---------------------------------------------------------------


def test_the_entrypoints_exit_code_counts_as_out_of_memory() -> None:
    from openeo_airflow.engine.entrypoint import OOM_EXIT

    assert OOM_EXIT in OOM_EXIT_CODES


@pytest.mark.parametrize(
    ("terminations", "texts", "component"),
    [
        ([Termination("executor", "OOMKilled", 137)], [], "executor"),
        ([Termination("driver", "Error", 137)], [], "driver"),
        ([Termination("driver", "Error", 52)], [], "driver"),  # the entrypoint's OOM_EXIT
        (
            [Termination("executor", "Evicted", None, "The node was low on resource: memory.")],
            [],
            "executor",
        ),
        ([], ["driver container failed with ExitCode: 137, Reason: OOMKilled"], ""),
        ([], ["driver container failed with ExitCode: 52, Reason: Error"], ""),
        ([], ['Exception in thread "main" java.lang.OutOfMemoryError: Java heap space'], ""),
        ([], ["Traceback (most recent call last):\n  ...\nMemoryError"], ""),
        (
            [],
            [
                "Lost task 3.3 (TID 9): ExecutorLostFailure (executor 2 exited caused by one"
                " of the running tasks)"
            ],
            "executor",
        ),
        (
            [],
            ["The executor with id 4 exited with exit code 137(SIGKILL, possible container OOM)."],
            "executor",
        ),
    ],
)
def test_out_of_memory_is_recognised(
    terminations: list[Termination], texts: list[str], component: str
) -> None:
    found = out_of_memory_evidence(terminations, texts)
    assert found is not None and found[0] == component and found[1]


@pytest.mark.parametrize(
    ("terminations", "texts"),
    [
        ([Termination("driver", "Error", 1, "")], ["ValueError: band B99 not found"]),
        ([Termination("executor", "Completed", 0)], []),
        (
            [
                Termination(
                    "executor", "Evicted", None, "The node was low on resource: ephemeral-storage."
                )
            ],
            [],
        ),
        ([], ["org.apache.spark.SparkException: Job aborted", "java.io.FileNotFoundException"]),
        ([], ["class OutOfMemoryErrorHandler"]),  # not the exception itself
    ],
)
def test_other_failures_are_not_out_of_memory(
    terminations: list[Termination], texts: list[str]
) -> None:
    assert out_of_memory_evidence(terminations, texts) is None


# --- the operator path --------------------------------------------------------------------------

SPARK_MODULE = "airflow.providers.cncf.kubernetes.operators.spark_kubernetes"
POD_MANAGER = "airflow.providers.cncf.kubernetes.utils.pod_manager.PodManager"


def _context(try_number: int) -> dict[str, Any]:
    ti = mock.MagicMock(dag_id="openeo_batch_job", task_id="load", map_index=0)
    ti.try_number = try_number
    return {"ti": ti, "task_instance": ti, "run_id": JOB, "dag": mock.MagicMock(parent_dag=None)}


@pytest.fixture
def cluster() -> Any:
    fake = FakeCluster()

    def await_completion(driver: k8s.V1Pod, *args: Any, **kwargs: Any) -> k8s.V1Pod:
        live = fake.pods[driver.metadata.name]
        live.status = pod("x", {}, fake.final_phase, *fake.final_states).status
        return live

    with (
        mock.patch(f"{SPARK_MODULE}.KubernetesHook") as hook,
        mock.patch(f"{SPARK_MODULE}.CustomObjectsApi", return_value=fake.custom),
        mock.patch(f"{POD_MANAGER}.await_pod_start", new_callable=mock.AsyncMock),
        mock.patch(f"{POD_MANAGER}.watch_pod_events", new_callable=mock.AsyncMock),
        mock.patch(f"{POD_MANAGER}.fetch_requested_container_logs"),
        mock.patch(f"{POD_MANAGER}.await_pod_completion", side_effect=await_completion),
    ):
        hook.return_value.core_v1_client = fake.core
        yield fake


def test_submits_the_manifest_and_deletes_it_when_done(cluster: FakeCluster) -> None:
    body = manifest(resources=RESOURCES["dynamic"], try_number=1)
    original = copy.deepcopy(body)
    context = _context(1)
    result = run_spark_application(context, body, kubernetes_conn_id="k8s")
    assert body == original  # the caller's manifest is not touched
    name = body["metadata"]["name"]
    assert result == {"name": name, "namespace": "openeo-jobs", "reattached": False}
    create = cluster.custom.create_namespaced_custom_object
    create.assert_called_once()
    assert create.call_args.kwargs["namespace"] == "openeo-jobs"
    # The exact body: ours plus what the provider adds for reattach (task labels, app name env).
    expected = copy.deepcopy(body)
    task_labels = SparkKubernetesOperator._get_ti_pod_labels(context)
    expected["spec"]["labels"] = task_labels
    for role in ("driver", "executor"):
        expected["spec"][role]["labels"].update(task_labels)
        expected["spec"][role]["env"].append({"name": "SPARK_APPLICATION_NAME", "value": name})
    sent = create.call_args.kwargs["body"]
    assert sent == expected
    assert json.loads(json.dumps(sent)) == sent
    cluster.custom.delete_namespaced_custom_object.assert_called_once()
    assert cluster.apps == {}


def test_body_sent_is_valid_except_the_providers_spec_labels(
    cluster: FakeCluster, schema: dict[str, Any]
) -> None:
    run_spark_application(_context(1), manifest(), kubernetes_conn_id="k8s")
    sent = cluster.custom.create_namespaced_custom_object.call_args.kwargs["body"]
    jsonschema.Draft7Validator(schema).validate(sent)
    # The provider writes spec.labels, which the CRD does not know: the API server drops it,
    # and the driver/executor labels (which the CRD knows) carry the same labels.
    assert unknown_fields(sent, schema) == ["spec.labels"]


def test_a_retry_reattaches_to_the_running_driver(cluster: FakeCluster) -> None:
    # Try 1 submitted its application, then its worker died (no clean-up ran).
    first = manifest(try_number=1)
    body = copy.deepcopy(first)
    task_labels = SparkKubernetesOperator._get_ti_pod_labels(_context(1))
    for role in ("driver", "executor"):
        body["spec"][role]["labels"].update(task_labels)
    cluster.create(
        group="sparkoperator.k8s.io",
        version="v1beta2",
        namespace="openeo-jobs",
        plural="sparkapplications",
        body=body,
    )
    cluster.custom.create_namespaced_custom_object.reset_mock()
    # Try 2 builds its own manifest (new name) but follows the running application instead.
    result = run_spark_application(_context(2), manifest(try_number=2), kubernetes_conn_id="k8s")
    cluster.custom.create_namespaced_custom_object.assert_not_called()
    assert result["reattached"] is True
    assert result["name"] == first["metadata"]["name"]
    assert cluster.apps == {}  # and deleted it once it had finished


def test_another_task_does_not_reattach(cluster: FakeCluster) -> None:
    run_spark_application(_context(1), manifest("transform", None), kubernetes_conn_id="k8s")
    other = _context(1)
    other["ti"].task_id = "save"
    run_spark_application(other, manifest("save", None), kubernetes_conn_id="k8s")
    assert cluster.custom.create_namespaced_custom_object.call_count == 2


def test_executor_oom_raises_stage_out_of_memory(cluster: FakeCluster) -> None:
    body = manifest()
    name = body["metadata"]["name"]
    cluster.final_phase, cluster.final_states = "Failed", (ended("Error", 1),)
    original_create = cluster.create

    def create_with_executor(**kwargs: Any) -> dict:
        created = original_create(**kwargs)
        cluster.add_executor(name, ended("OOMKilled", 137))
        return created

    cluster.custom.create_namespaced_custom_object.side_effect = create_with_executor
    with pytest.raises(StageOutOfMemory) as raised:
        run_spark_application(_context(1), body, kubernetes_conn_id="k8s")
    assert raised.value.component == "executor"
    assert "OOMKilled" in raised.value.evidence
    assert isinstance(raised.value.__cause__, AirflowException)
    assert cluster.apps == {}  # diagnosed first, then deleted


def test_driver_heap_exhaustion_in_the_log(cluster: FakeCluster) -> None:
    cluster.final_phase, cluster.final_states = "Failed", (ended("Error", 1),)
    cluster.driver_log = "INFO ...\njava.lang.OutOfMemoryError: Java heap space\n\tat ..."
    with pytest.raises(StageOutOfMemory, match="Java heap space"):
        run_spark_application(_context(1), manifest(), kubernetes_conn_id="k8s")


def test_failure_at_submission_is_diagnosed_and_cleaned_up(cluster: FakeCluster) -> None:
    cluster.app_state = "FAILED"
    cluster.error_message = "driver container failed with ExitCode: 137, Reason: OOMKilled"
    with pytest.raises(StageOutOfMemory, match="OOMKilled"):
        run_spark_application(_context(1), manifest(), kubernetes_conn_id="k8s")
    assert cluster.apps == {}  # the provider leaves it; we delete it


def test_other_failures_are_re_raised_as_they_are(cluster: FakeCluster) -> None:
    cluster.final_phase, cluster.final_states = "Failed", (ended("Error", 1),)
    cluster.driver_log = "Traceback ...\nValueError: band B99 not found"
    with pytest.raises(AirflowException) as raised:
        run_spark_application(_context(1), manifest(), kubernetes_conn_id="k8s")
    assert not isinstance(raised.value, StageOutOfMemory)
    assert cluster.apps == {}


# --- the UDF sidecar ------------------------------------------------------------------------------

UDF_SIZE = StageSize(
    name="transform",
    tiles=4,
    peak_tile_mb=300.0,
    peak_executor_mb=2000.0,
    peak_driver_mb=900.0,
    seconds=10.0,
    megapixels=5.0,
    bytes_read=0.0,
    resources=RESOURCES["static"],
)


def transform_sidecars() -> UdfSidecars:
    found = udf_sidecars("transform", 1, UDF_SIZE)
    assert found is not None
    return found


UDF_SIDECARS = transform_sidecars()


@pytest.mark.parametrize(
    ("stage", "udfs", "expected"),
    [("transform", 1, True), ("transform", 0, False), ("load", 2, False), ("save", 1, False)],
)
def test_only_a_transform_with_run_udf_gets_a_udf_sidecar(
    stage: str, udfs: int, expected: bool
) -> None:
    assert (udf_sidecars(stage, udfs, UDF_SIZE) is not None) is expected


def test_udf_sidecar_size_follows_the_stage_sizing() -> None:
    executor, driver = UDF_SIDECARS.executor, UDF_SIDECARS.driver
    # A run per executor core, each with the tile's data three times over the interpreter.
    assert (executor.workers, executor.cores) == (4, 4)
    assert executor.run_memory_mb == 768 + 3 * 300
    assert executor.memory_mb == 4 * (768 + 3 * 300) + 64
    # The driver evaluates the whole-cube parts one at a time, on its predicted peak.
    assert (driver.workers, driver.cores, driver.run_memory_mb) == (1, 2, 768 + 3 * 900)
    small = udf_sidecars("transform", 1, None)
    assert small is not None and small.executor.run_memory_mb == 1024  # the floor


@pytest.mark.parametrize(("stage", "node"), STAGE_NODES)
def test_udf_manifests_validate_against_the_crd(
    schema: dict[str, Any], stage: str, node: str | None
) -> None:
    body = manifest(stage, node, udf=udf_sidecars(stage, 1, UDF_SIZE))
    assert_valid(body, schema)
    assert json.loads(json.dumps(body)) == body
    has_udf = stage == "transform"
    names = [v["name"] for v in body["spec"]["volumes"]]
    assert (UDF_VOLUME in names) is has_udf
    for role in ("driver", "executor"):
        pod = body["spec"][role]
        env = {e["name"]: e["value"] for e in pod["env"]}
        assert ("initContainers" in pod) is has_udf
        assert ("OPENEO_AIRFLOW_UDF_RUNNER" in env) is has_udf


def test_the_udf_sidecar_is_isolated_and_sized(schema: dict[str, Any]) -> None:
    config = SparkK8sConfig(**{**CONFIG.__dict__, "credentials_secret": "s3-keys"})
    body = manifest("transform", None, config=config, udf=UDF_SIDECARS)
    assert_valid(body, schema)
    spec = body["spec"]
    assert {"name": UDF_VOLUME, "emptyDir": {}} in spec["volumes"]
    assert {
        "name": "openeo-workspace",
        "persistentVolumeClaim": {"claimName": "openeo-workspace"},
    } in spec["volumes"]
    for role, size in (("driver", UDF_SIDECARS.driver), ("executor", UDF_SIDECARS.executor)):
        pod = spec[role]
        # The Spark container: told to use the service, shares only the UDF volume with it.
        env = {e["name"]: e["value"] for e in pod["env"]}
        assert env["OPENEO_AIRFLOW_UDF_RUNNER"] == "service"
        assert env["OPENEO_AIRFLOW_UDF_SOCKET"] == UDF_SOCKET
        assert {"name": UDF_VOLUME, "mountPath": UDF_DIR} in pod["volumeMounts"]
        assert "sidecars" not in pod
        (udf,) = pod["initContainers"]
        assert udf["name"] == "openeo-udf" and udf["image"] == config.udf_image
        assert udf["restartPolicy"] == "Always"  # a native sidecar: ends with the pod
        assert udf["args"][udf["args"].index("--socket") + 1] == UDF_SOCKET
        assert udf["args"][udf["args"].index("--workers") + 1] == str(size.workers)
        assert udf["args"][udf["args"].index("--max-memory-mb") + 1] == str(size.run_memory_mb)
        limits = {"cpu": str(size.cores), "memory": f"{size.memory_mb}m"}
        assert udf["resources"] == {"requests": limits, "limits": limits}
        assert udf["startupProbe"]["exec"]["command"] == ["test", "-S", UDF_SOCKET]
        # No deployment secrets, no service-account token, no privileges.
        assert "env" not in udf and "envFrom" not in udf
        assert pod["envFrom"] == [{"secretRef": {"name": "s3-keys"}}]
        mounts = {m["mountPath"]: m["name"] for m in udf["volumeMounts"]}
        assert mounts == {UDF_DIR: UDF_VOLUME, TOKEN_DIR: NO_TOKEN_VOLUME}
        assert "openeo-workspace" not in mounts.values()
        context = udf["securityContext"]
        assert context["runAsNonRoot"] and context["readOnlyRootFilesystem"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}


def test_the_udf_image_matches_the_sidecar() -> None:
    dockerfile = Path(__file__).resolve().parents[1] / "images" / "udf" / "Dockerfile"
    text = dockerfile.read_text()
    assert "ENV VIRTUAL_ENV=/opt/openeo/venv" in text and UDF_PYTHON.startswith("/opt/openeo/venv/")
    assert "ARG UDF_UID=185" in text and "USER ${UDF_UID}" in text
    udf = manifest("transform", None, udf=UDF_SIDECARS)["spec"]["executor"]["initContainers"][0]
    assert udf["securityContext"]["runAsUser"] == 185
    assert f'"{UDF_SOCKET}"' in text  # the image's default socket is the manifest's


def test_the_sidecar_command_serves_the_spark_side_of_the_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sidecar's command and the Spark container's env, as the manifest writes them (the
    image's interpreter and the volume path moved to this machine), run a real UDF."""
    import subprocess
    import sys
    import time

    from openeo_airflow.processes.graph import evaluate

    pod = manifest("transform", None, udf=UDF_SIDECARS)["spec"]["executor"]
    (udf,) = pod["initContainers"]

    def local(text: str) -> str:
        return text.replace(UDF_DIR, str(tmp_path)).replace(UDF_PYTHON, sys.executable)

    service = subprocess.Popen([local(s) for s in udf["command"] + udf["args"]])
    try:
        while not (tmp_path / "udf.sock").exists():
            assert service.poll() is None, "the sidecar's command ended"
            time.sleep(0.05)
        for entry in pod["env"]:
            monkeypatch.setenv(entry["name"], local(entry["value"]))
        code = (
            "import os\n"
            "def apply_datacube(cube, context):\n"
            "    return cube.get_array() * 0 + os.getppid()\n"
        )
        graph = {
            "u": {
                "process_id": "run_udf",
                "arguments": {"data": [1.0, 2.0], "udf": code, "runtime": "Python"},
                "result": True,
            }
        }
        assert evaluate(graph) == [float(service.pid)] * 2
    finally:
        service.terminate()
        service.wait(timeout=30)
