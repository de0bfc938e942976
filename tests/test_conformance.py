"""The official openEO process test cases (openeo-processes 2.0.0-rc.2) through ``POST /result``.

Each case of ``../shared/openeo-processes-2.0.0-rc.2/tests/*.json5`` becomes one process graph:
the process under test as the result node, its arguments encoded as a client would send them
(a cube as a ``load_inline_cube`` node, a labeled array as an ``array_create_labeled`` node, the
no-data marker as ``null``); a case expecting a cube ends in ``save_result`` with format
``JSON``. The result is checked as the cases' README says: ``returns`` (numbers within ``delta``,
default 1e-10; NaN equals NaN; dates as instants) and/or ``throws`` (the error code must be the
named exception; ``true``: any error).

Every case runs. The cases we do not pass are listed, each with its reason, in
``conformance_expected_failures.yaml`` and marked as strict expected failures: a listed case
that passes fails the suite, so the list stays exact. The pass count is printed at the end.

Transport: ``POST /result`` on the real app (``tests/api_support``) when the backend returns
JSON results (``GET /file_formats`` lists ``JSON``); until then the same steps in process
(``compile_plan`` as the route does, then ``evaluate`` and the JSON encoding), and the
summary says which transport ran.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import json5
import pytest
import yaml
from fastapi.testclient import TestClient

from openeo_airflow.compiler.compile import compile_plan
from openeo_airflow.core.errors import OpenEOError
from openeo_airflow.processes import registry
from openeo_airflow.processes.graph import evaluate
from openeo_airflow.processes.inline import dumps
from tests.api_support import PREFIX, bearer, make_backend, make_client
from tests.conftest import SHARED

CASES_DIR = SHARED / "openeo-processes-2.0.0-rc.2" / "tests"
EXPECTED_FAILURES = Path(__file__).with_name("conformance_expected_failures.yaml")
DEFAULT_DELTA = 1e-10
RESULT_NODE = "node"


@dataclass(frozen=True)
class Case:
    process_id: str
    index: int
    test: dict[str, Any]
    path: Path

    @property
    def id(self) -> str:
        return f"{self.process_id}-{self.index}"


def read_json5(text: str) -> Any:
    """JSON5 as the test files use it, fast: comments, trailing commas, unquoted keys and
    ``NaN``/``Infinity`` are rewritten for Python's JSON parser; anything else goes to the
    (slow, complete) ``json5`` package."""
    out, i, in_string = [], 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            out.append(text[i : i + 2] if c == "\\" else c)
            i += 2 if c == "\\" else 1
            in_string = c != '"'
        elif text.startswith("//", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif text.startswith("/*", i):
            i = text.index("*/", i) + 2
        else:
            in_string = c == '"'
            out.append(c)
            i += 1
    cleaned = re.sub(r",(\s*[\]}])", r"\1", "".join(out))
    cleaned = re.sub(r"([{,]\s*)([A-Za-z_]\w*)(\s*:)", r'\1"\2"\3', cleaned)
    try:
        return json.loads(cleaned)
    except json.JSONDecodeError:
        return json5.loads(text)


def load_cases(folder: Path = CASES_DIR) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*.json5")):
        document = read_json5(path.read_text(encoding="utf-8"))
        for index, test in enumerate(document["tests"]):
            cases.append(Case(document["id"], index, test, path))
    return cases


def expected_failures(path: Path = EXPECTED_FAILURES) -> dict[str, str]:
    """``{case id: reason}``; a process listed with ``"*"`` fails in all of its cases."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    reasons: dict[str, str] = {}
    for process_id, entries in document.items():
        for index, reason in (entries or {}).items():
            reasons[f"{process_id}-{index}"] = str(reason)
    return reasons


def reason_for(case: Case, reasons: dict[str, str]) -> str | None:
    return reasons.get(case.id) or reasons.get(f"{case.process_id}-*")


# --- encoding a case as a process graph -----------------------------------------------------------


def resolve_ref(value: Any, base: Path) -> Any:
    """``{"$ref": "assets/..."}``: the referenced JSON5 document (or WKT text)."""
    return copy.deepcopy(_read_ref(base.parent / value["$ref"]))


@functools.cache
def _read_ref(target: Path) -> Any:
    text = target.read_text(encoding="utf-8")
    return text if target.suffix == ".wkt2" else read_json5(text)


class GraphBuilder:
    """Turns a case's arguments into process graph nodes, as a client would send them."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.nodes: dict[str, Any] = {}

    def add(self, process_id: str, arguments: dict[str, Any]) -> dict[str, str]:
        node_id = f"arg{len(self.nodes)}"
        self.nodes[node_id] = {"process_id": process_id, "arguments": arguments}
        return {"from_node": node_id}

    def encode(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.encode(v) for v in value]
        if not isinstance(value, dict):
            return value
        if "$ref" in value:
            return self.encode(resolve_ref(value, self.case.path))
        kind = value.get("type")
        if kind == "nodata":
            return None
        if kind == "datacube":
            cube = {**value}
            for dimension in cube.get("dimensions", {}).values():
                ref = dimension.get("reference_system")
                if isinstance(ref, dict) and "$ref" in ref:
                    dimension["reference_system"] = resolve_ref(ref, self.case.path)
            return self.add("load_inline_cube", {"data": cube})
        if kind == "labeled-array":
            items = value.get("data") or []
            return self.add(
                "array_create_labeled",
                {
                    "data": [self.encode(i["value"]) for i in items],
                    "labels": [i["key"] for i in items],
                },
            )
        if "process_graph" in value:
            return value
        return {k: self.encode(v) for k, v in value.items()}

    def graph(self) -> dict[str, Any]:
        arguments = {k: self.encode(v) for k, v in self.case.test.get("arguments", {}).items()}
        self.nodes[RESULT_NODE] = {
            "process_id": self.case.process_id,
            "arguments": arguments,
            "result": True,
        }
        if expects_cube(self.case):
            self.nodes[RESULT_NODE].pop("result")
            self.nodes["save"] = {
                "process_id": "save_result",
                "arguments": {"data": {"from_node": RESULT_NODE}, "format": "JSON"},
                "result": True,
            }
        return {"process_graph": self.nodes}


def expects_cube(case: Case) -> bool:
    expected = case.test.get("returns")
    if isinstance(expected, dict) and "$ref" in expected:
        return True
    return isinstance(expected, dict) and expected.get("type") == "datacube"


# --- running a graph ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    value: Any = None
    error: str | None = None


class ApiTransport:
    """``POST /result`` on the real app; the JSON body of the answer, or its error code."""

    name = "POST /result"

    def __init__(self, client: TestClient, headers: dict[str, str]) -> None:
        self.client, self.headers = client, headers

    def run(self, process: dict[str, Any]) -> Outcome:
        body = json.dumps({"process": process}, allow_nan=True)
        response = self.client.post(
            f"{PREFIX}/result",
            content=body,
            headers={**self.headers, "Content-Type": "application/json"},
        )
        if response.status_code >= 400:
            return Outcome(error=str(response.json().get("code")))
        return Outcome(value=json.loads(response.content))


class InProcessTransport:
    """What ``POST /result`` does, without HTTP: compile (validation), evaluate, encode."""

    name = "in process (compile_plan + evaluate)"

    def run(self, process: dict[str, Any]) -> Outcome:
        try:
            plan = compile_plan(process, known_processes=registry.specs(), collections={})
            value = evaluate(plan.process_graph, hooks={"save_result": lambda a, n: a["data"]})
            return Outcome(value=json.loads(dumps(value)))
        except OpenEOError as error:
            return Outcome(error=error.code)


# --- comparing ------------------------------------------------------------------------------------


def instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}([T ]|$)", value):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def same_instant(a: Any, b: Any) -> bool:
    x, y = instant(a), instant(b)
    return x is not None and y is not None and x == y


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def same_number(actual: Any, expected: float, delta: float) -> bool:
    if not is_number(actual):
        return False
    if math.isnan(expected):
        return math.isnan(actual)
    if math.isinf(expected) or math.isinf(actual):
        return actual == expected
    return abs(actual - expected) <= delta


def same(actual: Any, expected: Any, delta: float, base: Path) -> bool:
    if isinstance(expected, dict) and "$ref" in expected:
        expected = resolve_ref(expected, base)
    if isinstance(expected, dict):
        kind = expected.get("type")
        if kind == "nodata":
            return actual is None
        if kind == "datetime":
            return same_instant(actual, expected["value"])
        if kind == "datacube":
            return same_cube(actual, expected, delta, base)
        if kind == "labeled-array":
            return same_labeled(actual, expected, delta, base)
        return (
            isinstance(actual, dict)
            and set(actual) == set(expected)
            and all(same(actual[k], v, delta, base) for k, v in expected.items())
        )
    if isinstance(expected, bool):
        return actual is expected
    if is_number(expected):
        return same_number(actual, float(expected), delta)
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(same(a, e, delta, base) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected) and type(actual) is type(expected)


def same_labeled(actual: Any, expected: dict[str, Any], delta: float, base: Path) -> bool:
    if not isinstance(actual, dict) or actual.get("type") != "labeled-array":
        return False
    got, wanted = actual.get("data") or [], expected.get("data") or []
    return len(got) == len(wanted) and all(
        g["key"] == w["key"] and same(g["value"], w["value"], delta, base)
        for g, w in zip(got, wanted, strict=True)
    )


def _flat(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flat(item)
    else:
        yield data


def _nodata_values(cube: dict[str, Any]) -> list[Any]:
    nodata = cube.get("nodata")
    return nodata if isinstance(nodata, list) else [nodata]


def _number_or_nan(value: Any, nodata: list[Any]) -> float:
    if value is None or not is_number(value):
        return math.nan
    if any(is_number(n) and not math.isnan(n) and value == n for n in nodata):
        return math.nan
    return float(value)


def _same_label(actual: Any, expected: Any, kind: str) -> bool:
    if kind == "temporal" and same_instant(actual, expected):
        return True
    if is_number(actual) and is_number(expected):
        return math.isclose(actual, expected, rel_tol=0, abs_tol=1e-9)
    return bool(actual == expected)


def _transposed(values: list[Any], shape: list[int], order: list[int]) -> list[float]:
    """``values`` (flat, in ``shape``) read in the dimension order ``order``."""
    import numpy as np

    if not shape or math.prod(shape) == 0:
        return []
    return list(np.asarray(values, dtype=float).reshape(shape).transpose(order).ravel())


def same_cube(actual: Any, expected: dict[str, Any], delta: float, base: Path) -> bool:
    if not isinstance(actual, dict) or actual.get("type") != "datacube":
        return False
    wanted_dims, got_dims = expected.get("dimensions") or {}, actual.get("dimensions") or {}
    if set(wanted_dims) != set(got_dims):
        return False
    for name, wanted in wanted_dims.items():
        got = got_dims[name]
        kind = wanted.get("type", "other")
        if got.get("type") != kind:
            return False
        if len(got.get("values", [])) != len(wanted.get("values", [])):
            return False
        if not all(
            _same_label(g, w, kind) for g, w in zip(got["values"], wanted["values"], strict=True)
        ):
            return False
    data = expected.get("data")
    if data is None or (isinstance(data, list) and not data):
        return True
    wanted_order = list(expected.get("order") or wanted_dims)
    got_order = list(actual.get("order") or got_dims)
    shape = [len(got_dims[n]["values"]) for n in got_order]
    got_values = [_number_or_nan(v, [None]) for v in _flat(actual.get("data"))]
    got_values = _transposed(got_values, shape, [got_order.index(n) for n in wanted_order])
    nodata = _nodata_values(expected)
    wanted_values = [_number_or_nan(v, nodata) for v in _flat(data)]
    if len(got_values) != len(wanted_values):
        return False
    return all(
        (math.isnan(w) and math.isnan(g)) or (not math.isnan(g) and same_number(g, w, delta))
        for g, w in zip(got_values, wanted_values, strict=True)
    )


def check(case: Case, outcome: Outcome) -> tuple[bool, str]:
    """Whether ``outcome`` meets the case; the second item describes what happened."""
    throws = case.test.get("throws")
    if outcome.error is not None:
        ok = throws is True or (isinstance(throws, str) and outcome.error == throws)
        return ok, f"error {outcome.error}, expected " + (
            f"{throws!r}" if throws is not None else f"returns {case.test.get('returns')!r}"
        )
    if "returns" not in case.test:
        return False, f"returned {outcome.value!r}, expected the error {throws!r}"
    delta = float(case.test.get("delta", DEFAULT_DELTA))
    ok = same(outcome.value, case.test["returns"], delta, case.path)
    return ok, f"returned {_short(outcome.value)}, expected {_short(case.test['returns'])}"


def _short(value: Any) -> str:
    text = json.dumps(value, allow_nan=True, default=str)
    return text if len(text) < 400 else text[:400] + "..."


# --- the tests ------------------------------------------------------------------------------------

CASES = load_cases() if CASES_DIR.is_dir() else []
REASONS = expected_failures()
RESULTS: dict[str, bool] = {}


def _params() -> list[Any]:
    if not CASES:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{CASES_DIR} not found"))]
    params = []
    for case in CASES:
        reason = reason_for(case, REASONS)
        marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
        params.append(pytest.param(case, id=case.id, marks=marks))
    return params


class Summary:
    """A pytest plugin that prints the pass count at the end of the run."""

    def __init__(self, transport: str) -> None:
        self.transport = transport

    def line(self) -> str:
        passed = sum(RESULTS.values())
        return (
            f"openEO process conformance (openeo-processes 2.0.0-rc.2, {len(CASES)} cases):"
            f" {passed} of {len(RESULTS)} run pass, {len(RESULTS) - passed} are listed expected"
            f" failures [transport: {self.transport}]"
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "conformance")
        terminalreporter.write_line(self.line())


@pytest.fixture(scope="module")
def transport(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Any:
    home = tmp_path_factory.mktemp("conformance")
    collections = home / "collections.yaml"
    collections.write_text("collections: []\n")
    client = make_client(make_backend(home, collections))
    formats = client.get(f"{PREFIX}/file_formats").json()
    chosen: Any = (
        ApiTransport(client, bearer(client, "alice"))
        if "JSON" in (formats.get("output") or {})
        else InProcessTransport()
    )
    request.config.pluginmanager.register(Summary(chosen.name), "conformance-summary")
    return chosen


@pytest.mark.parametrize("case", _params())
def test_case(case: Case, transport: Any) -> None:
    try:
        ok, detail = check(case, transport.run(GraphBuilder(case).graph()))
    except (OSError, ValueError) as exc:  # e.g. a case referring to a missing asset
        ok, detail = False, f"cannot run the case: {exc!r}"
    RESULTS[case.id] = ok
    assert ok, detail


def test_expected_failures_name_existing_cases_with_reasons() -> None:
    if not CASES:
        pytest.skip(f"{CASES_DIR} not found")
    known = {c.id for c in CASES} | {f"{c.process_id}-*" for c in CASES}
    unknown = [key for key in REASONS if key not in known]
    assert not unknown, f"expected failures for cases that do not exist: {unknown}"
    assert all(reason.strip() for reason in REASONS.values())
