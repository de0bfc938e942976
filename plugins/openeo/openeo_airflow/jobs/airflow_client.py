"""Airflow's public REST API (v2), used with a service identity.

The openEO API talks to Airflow only through this client, so it behaves the same when mounted
inside Airflow's api-server and when deployed on its own.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from openeo_airflow.core.errors import InfrastructureBusy, Internal

BATCH_DAG_ID = "openeo_batch_job"
ENDED_RUN_STATES = frozenset({"failed", "success"})
CANCEL_ATTEMPTS = 4
CANCEL_PAUSE_SECONDS = 0.5


class AirflowRunExists(Exception):
    """A DAG run with this id exists already (a job can only be started once per run id)."""


class AirflowClient:
    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30) -> None:
        self._base = base_url.rstrip("/")
        self._credentials = {"username": username, "password": password}
        self._timeout = timeout
        self._token: str | None = None
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._client_pid = 0

    def trigger(
        self,
        run_id: str,
        conf: dict[str, Any],
        dag_id: str = BATCH_DAG_ID,
        note: str | None = None,
    ) -> None:
        body = {
            "dag_run_id": run_id,
            "logical_date": None,
            "run_after": run_after_now(),
            "conf": conf,
            "note": note,
        }
        response = self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", json=body)
        if response.status_code == 409:
            raise AirflowRunExists(run_id)
        _check(response)

    def dag_exists(self, dag_id: str = BATCH_DAG_ID) -> bool:
        """Whether the DAG processor has registered the DAG (runs can be triggered)."""
        response = self._request("GET", f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return False
        _check(response)
        return True

    def run_state(self, run_id: str, dag_id: str = BATCH_DAG_ID) -> str | None:
        """The run's state, or ``None`` when there is no such run."""
        response = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")
        if response.status_code == 404:
            return None
        _check(response)
        return str(response.json()["state"])

    def cancel(self, run_id: str, dag_id: str = BATCH_DAG_ID) -> None:
        """Mark the run failed (Airflow stops its running tasks and skips the rest), and make sure
        it stays so.

        On SQLite, a PATCH racing a task's own call (its run note) can wait 5 s on the database
        lock and then fail, and Airflow has let runs come back from a failed mark before. So the
        state is read back after each mark, and the mark sent again while the run is active.
        """
        path = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}"
        for attempt in range(CANCEL_ATTEMPTS):
            if attempt:
                time.sleep(CANCEL_PAUSE_SECONDS * attempt)
            response = self._request("PATCH", path, json={"state": "failed"})
            if response.status_code == 404:
                return
            if response.status_code < 500:
                _check(response)
                state = self.run_state(run_id, dag_id)
                if state is None or state in ENDED_RUN_STATES:
                    return
        raise InfrastructureBusy(
            f"Airflow did not stop DAG run '{run_id}' after {CANCEL_ATTEMPTS} attempts; "
            "try again in a moment."
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        client = self._session()
        try:
            response = client.request(method, path, headers=self._auth(client), **kwargs)
            if response.status_code == 401:
                response = client.request(
                    method, path, headers=self._auth(client, renew=True), **kwargs
                )
            return response
        except httpx.TransportError as exc:
            raise InfrastructureBusy(f"The workflow scheduler is not reachable: {exc}") from exc

    def _session(self) -> httpx.Client:
        """One pooled client per process (a forked child must not share its parent's sockets).

        A new client per request cost a TLS context each time, certificates loaded even for a
        plain-http URL: 0.1-0.3 s of CPU per call in a task, measured with py-spy. Plain http
        has nothing to verify, so no certificates are loaded for it at all.
        """
        with self._lock:
            if self._client is None or self._client_pid != os.getpid():
                self._client = httpx.Client(
                    base_url=self._base,
                    timeout=self._timeout,
                    verify=self._base.startswith("https://"),
                )
                self._client_pid = os.getpid()
            return self._client

    def _auth(self, client: httpx.Client, renew: bool = False) -> dict[str, str]:
        with self._lock:
            if self._token is None or renew:
                response = client.post("/auth/token", json=self._credentials)
                _check(response)
                self._token = response.json()["access_token"]
            return {"Authorization": f"Bearer {self._token}"}


def run_after_now() -> str:
    """The ``run_after`` of a run that may start at once: the previous whole second.

    The scheduler starts queued runs whose ``run_after <= now()`` in SQL, and SQLite's now has
    whole-second resolution: a run stamped with the current instant (Airflow's default) waited
    for the next second to begin, 0.5 s per job on average (measured: queued to running
    0.44-0.94 s). The stamp only orders runs; a second earlier changes nothing else.
    """
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
    return now.isoformat()


def _check(response: httpx.Response) -> None:
    if response.status_code >= 400:
        raise Internal(
            message=f"Airflow answered {response.status_code} to {response.request.method} "
            f"{response.request.url.path}: {response.text[:300]}"
        )
