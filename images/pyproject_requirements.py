"""Print the runtime requirements declared in a pyproject.toml, one per line.

Both images install the dependencies in a layer of their own, before the package source is
copied in, so that a code change does not reinstall (and re-download) every dependency.
Standard library only: it runs inside the base images before anything is installed.

    python pyproject_requirements.py pyproject.toml --extras demo --exclude apache-airflow
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation, so that `Apache_Airflow` and `apache-airflow` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = _NAME.match(requirement)
    if match is None:
        raise ValueError(f"not a requirement: {requirement!r}")
    return canonical_name(match.group(1))


def split_names(text: str) -> list[str]:
    """Accept "a,b", "a b" or "" (build args are single strings)."""
    return [part for part in re.split(r"[,\s]+", text) if part]


def requirements(
    pyproject: Path, extras: Iterable[str] = (), exclude: Iterable[str] = ()
) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional = project.get("optional-dependencies", {})
    wanted = list(project.get("dependencies", []))
    for extra in extras:
        if extra not in optional:
            raise KeyError(f"unknown extra {extra!r}; known: {sorted(optional)}")
        wanted += optional[extra]
    # The project itself may appear in its own extras ("pkg[other]"): never a dependency.
    skip = {canonical_name(name) for name in exclude} | {canonical_name(project["name"])}
    result: list[str] = []
    for requirement in wanted:
        if requirement_name(requirement) not in skip and requirement not in result:
            result.append(requirement)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extras", default="", help="extras to add, comma or space separated")
    parser.add_argument("--exclude", default="", help="distribution names to leave out")
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, split_names(args.extras), split_names(args.exclude))
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    sys.stdout.write("".join(f"{line}\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
