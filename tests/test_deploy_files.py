"""Static checks of the deployment files: Dockerfiles, Helm values and the RBAC manifest.

Nothing here needs Docker, Kubernetes or Helm; the files are parsed and cross-checked against
each other, against pyproject.toml and, where available, against the spark-operator chart's
own default values.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT.parent / "shared" / "schemas"
SPARK_OPERATOR_DEFAULTS = SCHEMAS / "spark-operator-chart-values.yaml"

AIRFLOW_DOCKERFILE = ROOT / "images" / "airflow" / "Dockerfile"
SPARK_DOCKERFILE = ROOT / "images" / "spark" / "Dockerfile"
DOCKERFILES = [AIRFLOW_DOCKERFILE, SPARK_DOCKERFILE]
HELM = ROOT / "helm-values"
SETTINGS_MODULE = ROOT / "plugins" / "openeo" / "openeo_airflow" / "core" / "settings.py"

SPARK_APP_VERBS = {"create", "get", "list", "watch", "delete", "patch"}


# --- helpers --------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pinned_airflow_version() -> str:
    for requirement in pyproject()["project"]["dependencies"]:
        match = re.fullmatch(r"apache-airflow==([\w.]+)", requirement.replace(" ", ""))
        if match:
            return match.group(1)
    raise AssertionError("pyproject.toml does not pin apache-airflow with ==")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with line continuations joined and comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in dockerfile.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        pending += line
        keyword, _, arguments = pending.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, f"{dockerfile}: dangling line continuation"
    return result


def arg_defaults(dockerfile: Path) -> dict[str, str]:
    defaults: dict[str, str] = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword == "ARG" and "=" in arguments:
            name, _, value = arguments.partition("=")
            defaults[name.strip()] = value.strip().strip('"')
    return defaults


def substitute(text: str, known: dict[str, str]) -> str:
    """Expand ${NAME} from `known`; unknown names stay as they are."""
    return re.sub(r"\$\{(\w+)\}", lambda m: known.get(m.group(1), m.group(0)), text)


def env_values(dockerfile: Path) -> dict[str, str]:
    """ENV key=value pairs, with ${ARG} (and earlier ${ENV}) references expanded."""
    args = arg_defaults(dockerfile)
    values: dict[str, str] = {}
    for keyword, arguments in instructions(dockerfile):
        if keyword != "ENV":
            continue
        for token in shlex.split(arguments):
            name, _, value = token.partition("=")
            values[name] = substitute(value, {**args, **values})
    return values


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths read by COPY/ADD (copies from other stages or images excluded)."""
    sources: list[str] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword not in {"COPY", "ADD"}:
            continue
        flags = [part for part in shlex.split(arguments) if part.startswith("--")]
        if any(flag.startswith("--from=") for flag in flags):
            continue
        rest = " ".join(part for part in shlex.split(arguments) if not part.startswith("--"))
        paths = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
        sources += paths[:-1]
    return sources


def dockerignore_patterns(dockerfile: Path) -> list[str]:
    ignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
    lines = ignore.read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _pattern_matches(pattern: str, path: str) -> bool:
    if pattern.startswith("**/"):
        rest = pattern[3:]
        return fnmatchcase(path, rest) or fnmatchcase(path, "*/" + rest)
    return fnmatchcase(path, pattern)


def is_ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last pattern matching the path or a parent decides."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if any(_pattern_matches(body.strip("/"), candidate) for candidate in candidates):
            ignored = not negated
    return ignored


def unknown_keys(values: dict[str, Any], defaults: dict[str, Any], prefix: str = "") -> list[str]:
    """Key paths of `values` that the chart's defaults do not have.

    An empty mapping or null in the defaults is free-form (resources, annotations, ...), so
    anything below it is accepted. A mapping where the default is a scalar or list is a mistake.
    """
    problems: list[str] = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            problems.append(path)
            continue
        default = defaults[key]
        if default is None or default == {}:
            continue
        if isinstance(value, dict) != isinstance(default, dict):
            problems.append(f"{path} (mapping vs. non-mapping)")
        elif isinstance(value, dict):
            problems += unknown_keys(value, default, path + ".")
    return problems


def leaf_paths(tree: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            yield from leaf_paths(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def has_path(tree: dict[str, Any], dotted: str) -> bool:
    node: Any = tree
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def airflow_values() -> dict[str, Any]:
    return load_yaml(HELM / "airflow.yaml")


def rbac_documents() -> list[dict[str, Any]]:
    text = (HELM / "rbac-sparkapplications.yaml").read_text(encoding="utf-8")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def requirements_module() -> ModuleType:
    path = ROOT / "images" / "pyproject_requirements.py"
    spec = importlib.util.spec_from_file_location("pyproject_requirements", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --- Dockerfiles ------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Path) -> None:
    sources = copy_sources(dockerfile)
    assert sources, "expected COPY instructions"
    patterns = dockerignore_patterns(dockerfile)
    for source in sources:
        assert list(ROOT.glob(source)), f"{source} (COPY in {dockerfile}) is not in the repo"
        assert not is_ignored(source, patterns), f"{source} is excluded by the dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerignore_keeps_local_state_out(dockerfile: Path) -> None:
    patterns = dockerignore_patterns(dockerfile)
    for local in [".venv", ".git", "tests", "bench", "plugins/openeo/x/__pycache__"]:
        assert is_ignored(local, patterns), local


def test_airflow_image_pins_the_project_airflow_version() -> None:
    version = pinned_airflow_version()
    args = arg_defaults(AIRFLOW_DOCKERFILE)
    assert args["AIRFLOW_VERSION"] == version
    froms = [a.split()[0] for k, a in instructions(AIRFLOW_DOCKERFILE) if k == "FROM"]
    assert set(froms) == {"${AIRFLOW_IMAGE}"}, "every stage on the same Airflow image"
    assert args["AIRFLOW_IMAGE"] == "apache/airflow:${AIRFLOW_VERSION}-python${PYTHON_VERSION}"
    assert args["PYTHON_VERSION"] == "3.11"
    runs = " ".join(a for k, a in instructions(AIRFLOW_DOCKERFILE) if k == "RUN")
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in runs
    assert args["CNCF_KUBERNETES_PROVIDER_VERSION"] == "10.25.0"
    assert "apache-airflow-providers-cncf-kubernetes==${CNCF_KUBERNETES_PROVIDER_VERSION}" in runs


def test_airflow_image_sets_the_folders_the_chart_uses() -> None:
    env = env_values(AIRFLOW_DOCKERFILE)
    core = airflow_values()["config"]["core"]
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == core["plugins_folder"]
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == core["dags_folder"]
    assert core["plugins_folder"].endswith("/plugins/openeo")


def test_spark_image_is_official_spark4_non_root_and_keeps_its_entrypoint() -> None:
    args = arg_defaults(SPARK_DOCKERFILE)
    assert re.fullmatch(r"apache/spark:4\.\d+\.\d+-[\w.-]+", args["SPARK_IMAGE"])
    keywords = [k for k, _ in instructions(SPARK_DOCKERFILE)]
    assert "ENTRYPOINT" not in keywords and "CMD" not in keywords
    users = [a for k, a in instructions(SPARK_DOCKERFILE) if k == "USER"]
    final_user = args.get(users[-1].strip("${}"), users[-1])
    assert final_user.isdigit() and final_user != "0"
    env = env_values(SPARK_DOCKERFILE)
    assert env["PYSPARK_PYTHON"] == env["PYSPARK_DRIVER_PYTHON"]
    assert args["PYTHON"] == "python3.11"


# --- the requirements helper both images use ------------------------------------------------


def test_requirements_helper_excludes_and_adds_extras() -> None:
    module = requirements_module()
    path = ROOT / "pyproject.toml"
    plain = module.requirements(path)
    assert f"apache-airflow=={pinned_airflow_version()}" in plain
    trimmed = module.requirements(path, exclude=["Apache_Airflow"])
    assert "apache-airflow" not in {module.requirement_name(r) for r in trimmed}
    assert len(trimmed) == len(plain) - 1
    extras = pyproject()["project"]["optional-dependencies"]
    with_demo = module.requirements(path, extras=["demo"])
    assert set(extras["demo"]) <= set(with_demo)
    with pytest.raises(KeyError):
        module.requirements(path, extras=["no-such-extra"])
    assert module.split_names("") == []
    assert module.split_names("a, b c") == ["a", "b", "c"]


# --- spark-operator values --------------------------------------------------------------------


def test_spark_operator_values_use_only_chart_keys() -> None:
    if not SPARK_OPERATOR_DEFAULTS.is_file():
        pytest.skip(f"chart defaults not available at {SPARK_OPERATOR_DEFAULTS}")
    values = load_yaml(HELM / "spark-operator.yaml")
    defaults = load_yaml(SPARK_OPERATOR_DEFAULTS)
    assert unknown_keys(values, defaults) == []


def test_spark_operator_values_choices() -> None:
    values = load_yaml(HELM / "spark-operator.yaml")
    assert values["webhook"]["enable"] is True
    assert values["controller"]["batchScheduler"]["enable"] is False
    assert values["spark"]["jobNamespaces"] and "" not in values["spark"]["jobNamespaces"]
    assert values["spark"]["serviceAccount"]["name"]
    assert values["controller"]["resources"]["requests"]
    gates = {g["name"]: g["enabled"] for g in values["controller"]["featureGates"]}
    if values["controller"].get("defaultTimeToLiveSeconds"):
        assert gates["DefaultTimeToLive"] is True


def test_unknown_key_check_catches_mistakes() -> None:
    defaults = {"a": {"b": 1, "free": {}}, "lst": [1], "n": None}
    assert unknown_keys({"a": {"b": 2, "free": {"x": {"y": 1}}}, "n": {"z": 1}}, defaults) == []
    assert unknown_keys({"a": {"c": 1}}, defaults) == ["a.c"]
    assert unknown_keys({"lst": {"x": 1}}, defaults) == ["lst (mapping vs. non-mapping)"]


# --- Airflow values ---------------------------------------------------------------------------


def test_airflow_values_pin_the_project_airflow_version() -> None:
    values = airflow_values()
    assert values["airflowVersion"] == pinned_airflow_version()
    assert values["defaultAirflowTag"] == pinned_airflow_version()
    assert values["executor"] in {"CeleryExecutor", "KubernetesExecutor"}
    assert values["images"]["airflow"]["repository"]
    assert values["dags"]["gitSync"]["enabled"] is False


def test_airflow_values_set_only_known_openeo_settings() -> None:
    known = set(re.findall(r'get\("([A-Z0-9_]+)"', SETTINGS_MODULE.read_text(encoding="utf-8")))
    values = airflow_values()
    extra_env = yaml.safe_load(values["extraEnv"])
    names = [e["name"] for e in values["env"] + extra_env]
    names += [s["envName"] for s in values["secret"]]
    assert len(names) == len(set(names)), "an environment variable is set twice"
    openeo = {n.removeprefix("OPENEO_AIRFLOW_") for n in names if n.startswith("OPENEO_AIRFLOW_")}
    assert openeo - known == set()
    assert {"DATABASE_URL", "WORKSPACE", "AIRFLOW_URL", "AIRFLOW_PASSWORD"} <= openeo
    secret_names = {s["envName"] for s in values["secret"]}
    assert {"OPENEO_AIRFLOW_DATABASE_URL", "OPENEO_AIRFLOW_AIRFLOW_PASSWORD"} <= secret_names
    urls = {e["name"]: e["value"] for e in extra_env}
    api_server = "-api-server:{{ .Values.ports.apiServer }}"
    assert urls["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].endswith(api_server + "/execution/")
    assert urls["OPENEO_AIRFLOW_AIRFLOW_URL"].endswith(api_server)


def test_airflow_trial_overrides_only_documented_knobs() -> None:
    trial = load_yaml(HELM / "airflow-trial.yaml")
    values = airflow_values()
    for path in leaf_paths(trial):
        assert has_path(values, path), f"{path} overrides nothing in airflow.yaml"


# --- RBAC -------------------------------------------------------------------------------------


def test_rbac_grants_workers_sparkapplications_in_the_jobs_namespace() -> None:
    docs = rbac_documents()
    roles = [d for d in docs if d["kind"] == "Role"]
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert len(roles) == 1 and len(bindings) == 1
    role, binding = roles[0], bindings[0]
    granted = set()
    for rule in role["rules"]:
        if "sparkoperator.k8s.io" in rule["apiGroups"] and "sparkapplications" in rule["resources"]:
            granted |= set(rule["verbs"])
    assert granted >= SPARK_APP_VERBS
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["metadata"]["namespace"] == role["metadata"]["namespace"]
    operator = load_yaml(HELM / "spark-operator.yaml")
    assert role["metadata"]["namespace"] in operator["spark"]["jobNamespaces"]
    subjects = {s["name"] for s in binding["subjects"] if s["kind"] == "ServiceAccount"}
    values = airflow_values()
    assert values["workers"]["serviceAccount"]["name"] in subjects
    assert values["triggerer"]["serviceAccount"]["name"] in subjects


def test_rbac_lets_workers_follow_and_diagnose_spark_pods() -> None:
    (role,) = [d for d in rbac_documents() if d["kind"] == "Role"]

    def verbs(group: str, resource: str) -> set[str]:
        return {
            verb
            for rule in role["rules"]
            if group in rule["apiGroups"] and resource in rule["resources"]
            for verb in rule["verbs"]
        }

    # Reattach finds the driver by labels; the diagnosis reads driver and executor pods.
    assert verbs("", "pods") >= {"get", "list", "watch", "patch", "delete"}
    assert "get" in verbs("", "pods/log")
    assert "get" in verbs("sparkoperator.k8s.io", "sparkapplications/status")


# --- spark-k8s engine: image, manifests and Helm values agree ------------------------------------


def spark_image_version() -> str:
    match = re.fullmatch(
        r"apache/spark:(\d+\.\d+\.\d+)-.+", arg_defaults(SPARK_DOCKERFILE)["SPARK_IMAGE"]
    )
    assert match, "SPARK_IMAGE is not an apache/spark:<version>-... tag"
    return match.group(1)


def test_spark_versions_agree() -> None:
    from openeo_airflow.engine.spark_k8s import SPARK_VERSION

    version = spark_image_version()
    assert version == SPARK_VERSION
    pins = [
        r.replace(" ", "").split("==")[1]
        for r in pyproject()["project"]["dependencies"]
        if r.replace(" ", "").startswith("pyspark==")
    ]
    assert pins in ([], [version]), "spark-local (pyspark pin) and the Spark image differ"


def test_spark_image_leaves_out_airflow_and_pyspark() -> None:
    module = requirements_module()
    excluded = module.split_names(arg_defaults(SPARK_DOCKERFILE)["EXCLUDE_REQUIREMENTS"])
    kept = module.requirements(ROOT / "pyproject.toml", exclude=excluded)
    names = [module.requirement_name(r) for r in kept]
    # Airflow (also through its providers) is never imported by a stage; pyspark comes from the
    # Spark distribution, so a PyPI copy would shadow it with another version.
    assert not [n for n in names if n.startswith("apache-airflow") or n == "pyspark"]


def test_spark_image_ships_the_launcher_the_manifests_name() -> None:
    from openeo_airflow.engine.spark_k8s import LAUNCHER

    target = LAUNCHER.removeprefix("local://")
    copies = [a for k, a in instructions(SPARK_DOCKERFILE) if k == "COPY" and a.endswith(target)]
    assert copies == [f"images/spark/entrypoint.py {target}"]
    launcher = (ROOT / "images" / "spark" / "entrypoint.py").read_text(encoding="utf-8")
    assert "from openeo_airflow.engine.entrypoint import main" in launcher
    entrypoint = importlib.import_module("openeo_airflow.engine.entrypoint")
    assert callable(entrypoint.main)
    steps = instructions(SPARK_DOCKERFILE)
    copy_at = steps.index(("COPY", copies[0]))
    last_user = max(i for i, (k, _) in enumerate(steps) if k == "USER")
    assert copy_at < last_user, "the launcher is installed as root, before the final USER"


def test_airflow_values_point_spark_stages_at_the_jobs_namespace() -> None:
    env = {e["name"]: e.get("value") for e in airflow_values()["env"]}
    operator = load_yaml(HELM / "spark-operator.yaml")
    (role,) = [d for d in rbac_documents() if d["kind"] == "Role"]
    namespace = env["OPENEO_AIRFLOW_K8S_NAMESPACE"]
    assert namespace == role["metadata"]["namespace"]
    assert namespace in operator["spark"]["jobNamespaces"]
    assert (
        env["OPENEO_AIRFLOW_SPARK_SERVICE_ACCOUNT"] == operator["spark"]["serviceAccount"]["name"]
    )
    image = airflow_values()["images"]["airflow"]
    spark_image = env["OPENEO_AIRFLOW_SPARK_IMAGE"]
    assert spark_image.rsplit(":", 1) == [
        image["repository"].replace("/airflow", "/spark"),
        image["tag"],
    ]
    # The PVC is mounted in Spark pods at the path the workers use for the same workspace.
    assert env["OPENEO_AIRFLOW_WORKSPACE_PVC"]
    mounts = {m["name"]: m["mountPath"] for m in airflow_values()["workers"]["extraVolumeMounts"]}
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in airflow_values()["workers"]["extraVolumes"]
        if "persistentVolumeClaim" in v
    }
    (volume,) = [n for n, c in claims.items() if c == env["OPENEO_AIRFLOW_WORKSPACE_PVC"]]
    assert mounts[volume] == env["OPENEO_AIRFLOW_WORKSPACE"]


def test_helm_readme_documents_the_spark_k8s_settings() -> None:
    readme = (HELM / "README.md").read_text(encoding="utf-8")
    known = set(re.findall(r'get\("([A-Z0-9_]+)"', SETTINGS_MODULE.read_text(encoding="utf-8")))
    for name in (
        "ENGINE",
        "K8S_NAMESPACE",
        "SPARK_IMAGE",
        "SPARK_SERVICE_ACCOUNT",
        "WORKSPACE_PVC",
        "KUBERNETES_CONN_ID",
    ):
        assert name in known, name
        assert f"`OPENEO_AIRFLOW_{name}`" in readme, name
