"""The Airflow REST calls products need beyond the batch job's: pause, backfill, delete a DAG."""

from __future__ import annotations

import time
from datetime import datetime

import httpx

from openeo_airflow.core.errors import InfrastructureBusy
from openeo_airflow.core.products import PRODUCT_TAG, ProductNotReady
from openeo_airflow.jobs.airflow_client import AirflowClient, _check

PAGE = 100
LOCK_RETRY_SECONDS = (1, 2, 4, 8)


class ProductAirflow(AirflowClient):
    def paused(self, dag_id: str) -> bool | None:
        """Whether Airflow has the DAG paused; ``None`` when it has not parsed it yet."""
        response = self._request("GET", f"/api/v2/dags/{dag_id}")
        if response.status_code == 404:
            return None
        _check(response)
        return bool(response.json()["is_paused"])

    def paused_states(self) -> dict[str, bool]:
        """``dag_id -> is_paused`` of every product DAG Airflow has (paged)."""
        states: dict[str, bool] = {}
        offset = 0
        while True:
            params = {"tags": PRODUCT_TAG, "limit": PAGE, "offset": offset}
            response = self._request("GET", "/api/v2/dags", params=params)
            _check(response)
            page = response.json()["dags"]
            states.update({dag["dag_id"]: bool(dag["is_paused"]) for dag in page})
            offset += len(page)
            if len(page) < PAGE:
                return states

    def set_paused(self, dag_id: str, paused: bool) -> bool:
        """Pause or resume the DAG; ``False`` when Airflow does not know it yet (it is then
        created paused or not from the products table, see ``is_paused_upon_creation``)."""
        response = self._request("PATCH", f"/api/v2/dags/{dag_id}", json={"is_paused": paused})
        if response.status_code == 404:
            return False
        _check(response)
        return True

    def backfill(
        self, dag_id: str, from_date: datetime, to_date: datetime, reprocess: str
    ) -> dict[str, object]:
        """Runs for every data interval whose start (logical date) is in ``[from, to]``."""
        body = {
            "dag_id": dag_id,
            "from_date": from_date.isoformat(),
            "to_date": to_date.isoformat(),
            "reprocess_behavior": reprocess,
            # Two cores in the embedded default; the scheduler's parallelism caps it anyway.
            "max_active_runs": 2,
        }
        response = self._request("POST", "/api/v2/backfills", json=body)
        # On SQLite Airflow answers 503 while the scheduler holds the write lock; nothing was
        # created (the transaction rolled back), so asking again is safe.
        for pause in LOCK_RETRY_SECONDS:
            if response.status_code != 503:
                break
            time.sleep(pause)
            response = self._request("POST", "/api/v2/backfills", json=body)
        if response.status_code == 503:
            raise InfrastructureBusy(
                f"Airflow could not create the backfill now: {_detail(response)} Try again shortly."
            )
        if response.status_code == 404:
            raise ProductNotReady(
                reason=f"Airflow has not registered the DAG '{dag_id}' yet "
                "(new products appear within the DAG processor's refresh); try again shortly."
            )
        if response.status_code in (400, 409, 422):
            raise ProductNotReady(reason=f"Airflow refused the backfill: {_detail(response)}")
        _check(response)
        result: dict[str, object] = response.json()
        return result

    def delete_dag(self, dag_id: str) -> bool:
        """Remove the DAG and its runs from Airflow; ``False`` if tasks are still running."""
        response = self._request("DELETE", f"/api/v2/dags/{dag_id}")
        if response.status_code == 409:
            return False
        if response.status_code != 404:
            _check(response)
        return True


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or response.text[:300])
