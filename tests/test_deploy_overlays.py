"""The per-deployment overlays in helm-values/overlays/: valid YAML, keys the charts know, the
same openEO settings as the base values (Helm replaces lists whole), GDAL profiles and their
credentials, autoscaler-friendly placement, and every secret and image documented."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from openeo_airflow.io.gdal_env import CREDENTIALS, PROFILES
from tests.test_deploy_files import (
    HELM,
    ROOT,
    SETTINGS_MODULE,
    SPARK_OPERATOR_DEFAULTS,
    airflow_values,
    has_path,
    load_yaml,
    pyproject,
    unknown_keys,
)

OVERLAYS = HELM / "overlays"
DEPLOYMENTS = ["cloudferro", "tsystems", "dev"]
PRODUCTION = ["cloudferro", "tsystems"]
GUIDE = HELM / "README.md"
IMAGES_README = ROOT / "images" / "README.md"

# Airflow chart keys used by the overlays beyond those of airflow.yaml, read by hand in the
# chart's values.yaml (1.19 line; all present since chart 1.11). The chart's values.schema.json
# refuses unknown keys, so a typo here would fail `helm install`.
AIRFLOW_CHART_KEYS = {
    "nodeSelector",
    "tolerations",
    "workers.safeToEvict",
    "workers.terminationGracePeriodSeconds",
    "workers.nodeSelector",
    "workers.tolerations",
    "workers.keda.cooldownPeriod",
    "scheduler.podDisruptionBudget.enabled",
    "scheduler.safeToEvict",
    "triggerer.safeToEvict",
    "dagProcessor.safeToEvict",
}
# Free-form below these (Kubernetes objects): anything is accepted under them.
FREE_FORM = {"nodeSelector", "tolerations", "resources", "affinity"}
# openEO settings an overlay may set differently from airflow.yaml.
PER_DEPLOYMENT = {"GDAL_PROFILE", "MAX_EXECUTORS", "MAX_EXECUTOR_MEMORY_MB"}


def overlay(deployment: str, chart: str) -> dict[str, Any]:
    return load_yaml(OVERLAYS / deployment / f"{chart}.yaml")


def key_paths(tree: dict[str, Any], prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FREE_FORM:
            paths += key_paths(value, path + ".")
        else:
            paths.append(path)
    return paths


def env_of(values: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in values.get("env", [])}


def guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


# --- YAML and chart keys -------------------------------------------------------------------------


def test_every_values_file_is_valid_yaml() -> None:
    files = sorted(HELM.rglob("*.yaml"))
    assert len(files) >= 4 + 2 * len(DEPLOYMENTS)
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        assert documents and all(isinstance(d, dict) for d in documents), path


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_spark_operator_overlays_use_only_chart_keys(deployment: str) -> None:
    if not SPARK_OPERATOR_DEFAULTS.is_file():
        pytest.skip(f"chart defaults not available at {SPARK_OPERATOR_DEFAULTS}")
    assert (
        unknown_keys(overlay(deployment, "spark-operator"), load_yaml(SPARK_OPERATOR_DEFAULTS))
        == []
    )


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_airflow_overlays_use_only_known_chart_keys(deployment: str) -> None:
    base = airflow_values()
    for path in key_paths(overlay(deployment, "airflow")):
        assert has_path(base, path) or path in AIRFLOW_CHART_KEYS, (
            f"{deployment}: {path} is neither in airflow.yaml nor a checked chart key"
        )


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_overlays_restate_the_base_settings(deployment: str) -> None:
    values = overlay(deployment, "airflow")
    base, env = env_of(airflow_values()), env_of(values)
    assert set(base) <= set(env), f"{deployment} drops {set(base) - set(env)} (lists replace)"
    changed = {n.removeprefix("OPENEO_AIRFLOW_") for n in base if env[n] != base[n]}
    assert changed <= PER_DEPLOYMENT, changed
    known = set(re.findall(r'get\("([A-Z0-9_]+)"', SETTINGS_MODULE.read_text(encoding="utf-8")))
    ours = {n.removeprefix("OPENEO_AIRFLOW_") for n in env if n.startswith("OPENEO_AIRFLOW_")}
    assert ours <= known, ours - known
    if "secret" in values:
        base_secrets = {s["envName"]: s for s in airflow_values()["secret"]}
        secrets = {s["envName"]: s for s in values["secret"]}
        for name, entry in base_secrets.items():
            assert secrets.get(name) == entry, f"{deployment}: secret entry {name} changed"


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_the_gdal_profile_exists_and_gets_its_credentials(deployment: str) -> None:
    values = overlay(deployment, "airflow")
    profile = env_of(values)["OPENEO_AIRFLOW_GDAL_PROFILE"]
    assert profile in PROFILES
    provided = {s["envName"] for s in values.get("secret", [])}
    assert set(CREDENTIALS.get(profile, {}).values()) <= provided


def test_the_cloud_overlays_differ_in_object_store_endpoint_and_profile() -> None:
    profiles = {d: env_of(overlay(d, "airflow"))["OPENEO_AIRFLOW_GDAL_PROFILE"] for d in PRODUCTION}
    assert profiles == {"cloudferro": "cloudferro-s3", "tsystems": "tsystems-s3"}
    endpoints = {PROFILES[p]["AWS_S3_ENDPOINT"] for p in profiles.values()}
    assert len(endpoints) == 2
    cloudferro, tsystems = (env_of(overlay(d, "airflow")) for d in PRODUCTION)
    differing = {n for n in cloudferro if cloudferro[n] != tsystems.get(n)}
    assert differing == {"OPENEO_AIRFLOW_GDAL_PROFILE"}


# --- cluster autoscaler --------------------------------------------------------------------------


@pytest.mark.parametrize("deployment", PRODUCTION)
def test_production_overlays_are_autoscaler_friendly(deployment: str) -> None:
    values = overlay(deployment, "airflow")
    operator = overlay(deployment, "spark-operator")
    # Busy workers are not evicted by a scale-down; KEDA scales them instead.
    assert values["workers"]["safeToEvict"] is False
    assert values["workers"]["keda"]["enabled"] is True
    assert values["workers"]["keda"]["minReplicaCount"] >= 1
    # Airflow and the operator stay on the baseline pool.
    pool = values["nodeSelector"]
    assert pool and operator["controller"]["nodeSelector"] == pool
    assert operator["webhook"]["nodeSelector"] == pool
    assert operator["webhook"]["replicas"] >= 2
    # Executor pods fit the Spark pool's nodes, or they would stay Pending for good.
    env = env_of(values)
    assert int(env["OPENEO_AIRFLOW_MAX_EXECUTOR_MEMORY_MB"]) > 0
    assert int(env["OPENEO_AIRFLOW_MAX_EXECUTORS"]) > 0


def test_the_dev_overlay_is_small() -> None:
    values = overlay("dev", "airflow")
    assert values["apiServer"]["replicas"] == 1
    assert values["workers"]["replicas"] == 1
    assert values["workers"]["keda"]["enabled"] is False
    assert int(env_of(values)["OPENEO_AIRFLOW_MAX_EXECUTORS"]) <= 2
    assert "secret" not in values, "the dev overlay needs no extra secrets"


# --- documented ----------------------------------------------------------------------------------


def referenced_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, over the base values and every overlay."""
    found: dict[str, set[str]] = {}
    files = [HELM / "airflow.yaml", *sorted(OVERLAYS.glob("*/airflow.yaml"))]
    for path in files:
        values = load_yaml(path)
        for entry in values.get("secret", []):
            found.setdefault(entry["secretName"], set()).add(entry["secretKey"])
    base = airflow_values()
    fixed = {
        base["data"]["metadataSecretName"]: "connection",
        base["fernetKeySecretName"]: "fernet-key",
        base["apiSecretKeySecretName"]: "api-secret-key",
        base["jwtSecretName"]: "jwt-secret",
    }
    for name, key in fixed.items():
        found.setdefault(name, set()).add(key)
    return found


def test_every_referenced_secret_and_key_is_documented() -> None:
    guide = guide_text()
    for name, keys in referenced_secrets().items():
        assert f"create secret generic {name}" in guide, f"secret {name} is not documented"
        for key in keys:
            assert f"--from-literal={key}=" in guide, f"key {key} of {name} is not documented"


def test_every_referenced_configmap_and_claim_is_documented() -> None:
    guide = guide_text()
    values = airflow_values()
    volumes = values["apiServer"]["extraVolumes"] + values["workers"]["extraVolumes"]
    for volume in volumes:
        if "configMap" in volume:
            assert f"create configmap {volume['configMap']['name']}" in guide
        if "persistentVolumeClaim" in volume:
            assert f"`{volume['persistentVolumeClaim']['claimName']}`" in guide


def test_every_referenced_image_is_documented() -> None:
    version = pyproject()["project"]["version"]
    images = (IMAGES_README.read_text(encoding="utf-8"), guide_text())
    refs = []
    for path in [HELM / "airflow.yaml", *sorted(OVERLAYS.glob("*/airflow.yaml"))]:
        values = load_yaml(path)
        if "images" in values:
            image = values["images"]["airflow"]
            refs.append(f"{image['repository']}:{image['tag']}")
        refs += [v for n, v in env_of(values).items() if n == "OPENEO_AIRFLOW_SPARK_IMAGE"]
    assert refs
    for ref in refs:
        repository, tag = ref.rsplit(":", 1)
        assert tag == version, f"{ref}: tag differs from the package version {version}"
        name = repository.rsplit("/", 1)[1]
        assert f"`openeo-airflow/{name}`" in images[0], f"image {name} not in images/README.md"
    for base in ("apache/airflow:", "apache/spark:"):
        assert base in images[0], base


def test_the_guide_names_every_overlay_and_the_node_pool_labels() -> None:
    guide = guide_text()
    for path in sorted(OVERLAYS.glob("*/*.yaml")):
        assert path.relative_to(ROOT).as_posix() in guide, path
    for deployment in PRODUCTION:
        for key, value in overlay(deployment, "airflow")["nodeSelector"].items():
            assert f"{key}={value}" in guide
