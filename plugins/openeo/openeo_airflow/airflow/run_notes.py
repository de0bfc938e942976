"""The note of a batch run in the Airflow UI: which openEO job, what graph, how it was sized,
where the results are.

Airflow 3 shows a DAG run's note (Markdown) at the top of the run's page and in the runs list,
and tasks cannot change it through the execution API: the size and save tasks set it through
Airflow's public REST API (``PATCH /api/v2/dags/{dag}/dagRuns/{run}``) with the same service
identity the openEO API uses. The full process graph goes to the size task's XCom
(``process_graph``), which the UI shows as JSON; the note has room (1000 characters, Airflow's
limit) for a one-line summary only.

The results link is root-relative: the openEO API is served by the same api-server as the
Airflow UI (``/openeo/1.2`` beside Airflow's own routes), so the browser resolves it to whatever
host the operator reached the UI through. ``settings.airflow_url`` is an in-cluster address in
Kubernetes deployments; only its path (a base path Airflow may be served under) is kept.

Updating the note is best effort: a failure is logged and never fails the task. Notes are
sent in the task's own thread, one call after the other: on the embedded SQLite database, a
note sent in the background while the task pushed an XCom locked both requests for the
database's 5 s timeout (the PATCH's audit-log insert against the XCom's insert), and a
pooled connection makes a note one round trip of 25-40 ms. One client per task process keeps
the token between the two notes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from typing import Any
from urllib.parse import urlsplit

from openeo_airflow.jobs.airflow_client import AirflowClient, _check
from openeo_airflow.jobs.backend import Backend

log = logging.getLogger(__name__)

NOTE_LIMIT = 1000  # Airflow's DAGRunPatchBody.note max_length
OPENEO_PATH = "/openeo/1.2"
_ARGUMENT_NAMES = ("id", "format", "reducer", "process")
_MAX_STAGE_LINES = 6
_TITLE_LIMIT = 120


class RunNoteClient(AirflowClient):
    """The one Airflow call this module needs beyond the job service's."""

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        response = self._request(
            "PATCH",
            f"/api/v2/dags/{dag_id}/dagRuns/{run_id}",
            params={"update_mask": "note"},
            json={"note": note[:NOTE_LIMIT]},
        )
        _check(response)


def results_url(airflow_url: str, job_id: str) -> str:
    """``/openeo/1.2/jobs/{id}/results`` below the path Airflow is served under."""
    base = urlsplit(airflow_url).path.rstrip("/")
    return f"{base}{OPENEO_PATH}/jobs/{job_id}/results"


def graph_summary(process: Mapping[str, Any]) -> str:
    """``4 nodes: load_collection(S2), ndvi, reduce_dimension[max], save_result(GTiff)``."""
    graph = process.get("process_graph", process)
    if not isinstance(graph, Mapping) or not graph:
        return "(empty)"
    parts = [_node_text(node) for node in _ordered(graph)]
    return f"{len(parts)} node{'s' if len(parts) != 1 else ''}: " + ", ".join(parts)


def _ordered(graph: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Nodes in dependency order (inputs first); ties keep the graph's own order."""
    deps = {
        key: set(_from_nodes(node.get("arguments", {}) if isinstance(node, Mapping) else {}))
        & set(graph)
        for key, node in graph.items()
    }
    done: list[str] = []
    while len(done) < len(graph):
        ready = [k for k in graph if k not in done and deps[k] <= set(done)]
        done += ready or [k for k in graph if k not in done]  # a cycle: keep the rest as given
    return [graph[k] for k in done if isinstance(graph[k], Mapping)]


def _from_nodes(value: Any) -> Iterable[str]:
    if isinstance(value, Mapping):
        if "from_node" in value:
            yield str(value["from_node"])
        elif "process_graph" not in value:
            for item in value.values():
                yield from _from_nodes(item)
    elif isinstance(value, list):
        for item in value:
            yield from _from_nodes(item)


def _node_text(node: Mapping[str, Any]) -> str:
    text = str(node.get("process_id", "?"))
    arguments = node.get("arguments") or {}
    callbacks = [
        ", ".join(str(n.get("process_id", "?")) for n in v["process_graph"].values())
        for v in arguments.values()
        if isinstance(v, Mapping) and isinstance(v.get("process_graph"), Mapping)
    ]
    if callbacks:
        text += "[" + "; ".join(callbacks) + "]"
    for name in _ARGUMENT_NAMES:
        value = arguments.get(name)
        if isinstance(value, str):
            return f"{text}({value})"
    return text


def sizing_lines(sizing: Mapping[str, Any]) -> list[str]:
    """The decision in a line, then one line per stage (Spark resources where they matter)."""
    head = (
        f"**Sizing:** engine `{sizing.get('engine', '?')}` ({sizing.get('reason', '-')}), "
        f"tile {sizing.get('tile_size', '?')} px, {float(sizing.get('megapixels', 0)):,.1f} Mpx, "
        f"about {float(sizing.get('seconds', 0)):.0f} s, "
        f"{float(sizing.get('credits', 0)):.3f} credits"
    )
    lines = [head]
    stages = list(sizing.get("stages") or [])
    for stage in stages[:_MAX_STAGE_LINES]:
        r = stage.get("resources") or {}
        line = (
            f"- {stage.get('name', '?')}: {stage.get('tiles', '?')} tile(s), "
            f"peak {float(stage.get('peak_tile_mb', 0)):.0f} MiB/tile"
        )
        if sizing.get("engine") != "inline":
            line += (
                f"; {r.get('max_executors', '?')} x {r.get('executor_cores', '?')} core(s), "
                f"{r.get('executor_memory_mb', '?')}+{r.get('executor_memory_overhead_mb', '?')} "
                "MiB/executor"
            )
        lines.append(line)
    if len(stages) > _MAX_STAGE_LINES:
        lines.append(f"- ... {len(stages) - _MAX_STAGE_LINES} more stage(s)")
    return lines


def build_note(
    job_id: str,
    graph: str,
    sizing: Mapping[str, Any] | None,
    results: str,
    *,
    owner: str | None = None,
    title: str | None = None,
    assets: list[str] | None = None,
) -> str:
    """The run's note in Markdown, at most ``NOTE_LIMIT`` characters.

    ``assets`` is ``None`` while the job runs and the list of result files once it finished.
    When the text is too long, stage lines go first, then the graph summary is shortened; the
    job id, the sizing decision and the results link always stay.
    """
    # The first line is the note the openEO API sets at trigger (jobs/service.py), unchanged.
    head = f"openEO job {job_id}" + (f" of {owner}" if owner else "")
    if title:
        head += f": {_shorten(title, _TITLE_LIMIT)}"
    if assets is None:
        tail = f"**Results** (once finished): [{results}]({results})"
    else:
        count = f"{len(assets)} file{'s' if len(assets) != 1 else ''}"
        tail = f"**Results:** [{results}]({results}) ({count})"
    size = sizing_lines(sizing) if sizing else ["**Sizing:** not decided yet"]
    label, where = "**Process graph:** ", " (full graph: XCom `process_graph` of task `size`)"

    def compose(graph_text: str) -> str:
        return "\n\n".join([head, label + graph_text + where, "\n".join(size), tail])

    note = compose(_one_line(graph))
    if len(note) > NOTE_LIMIT:
        size = size[:1]
        note = compose(_one_line(graph))
    if len(note) > NOTE_LIMIT:
        budget = NOTE_LIMIT - len(compose(""))
        note = compose(_shorten(graph, budget))
    return note[:NOTE_LIMIT]


def _shorten(text: str, limit: int) -> str:
    text = _one_line(text)
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 4)] + " ..." if limit >= 4 else ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


# --- effects: called at the end of the size and save tasks ---------------------------------------


def on_sized(backend: Backend, job_id: str, spec: Mapping[str, Any]) -> None:
    """After sizing: the graph goes to XCom, the note gets the sizing and the results link."""
    context = _context()
    if context is None:
        return
    job = backend.registry.get(job_id)
    _best_effort(lambda: context["ti"].xcom_push(key="process_graph", value=job.process))
    note = build_note(
        job_id,
        graph_summary(job.process),
        spec,
        results_url(backend.settings.airflow_url, job_id),
        owner=job.owner,
        title=job.title,
    )
    _set(backend, context, note)


def on_finished(backend: Backend, job_id: str, assets: list[str]) -> None:
    """After saving: the note says the results are there, and how many files."""
    context = _context()
    if context is None:
        return
    job = backend.registry.get(job_id)
    note = build_note(
        job_id,
        graph_summary(job.process),
        (job.sizing or {}).get("predicted"),
        results_url(backend.settings.airflow_url, job_id),
        owner=job.owner,
        title=job.title,
        assets=assets,
    )
    _set(backend, context, note)


def _context() -> Any:
    """The running task's context, or ``None`` outside an Airflow task (tests, scripts)."""
    from airflow.sdk import get_current_context

    try:
        return get_current_context()
    except RuntimeError:
        return None


def _set(backend: Backend, context: Any, note: str) -> None:
    run = context["dag_run"]
    settings = backend.settings
    client = _client(settings.airflow_url, settings.airflow_user, settings.airflow_password)
    _best_effort(lambda: client.set_note(run.dag_id, run.run_id, note))


@cache
def _client(url: str, user: str, password: str) -> RunNoteClient:
    return RunNoteClient(url, user, password, timeout=10)


def _best_effort(call: Callable[[], object]) -> None:
    try:
        call()
    except Exception as exc:  # the note is for people; the job must not fail for it
        log.warning("Could not update the run's note in Airflow: %s: %s", type(exc).__name__, exc)
