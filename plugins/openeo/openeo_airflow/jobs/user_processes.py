"""User-defined processes: stored per user, resolved by id when a graph calls them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import Engine, delete, insert, select, update

from openeo_airflow.core.errors import ProcessGraphNotFound
from openeo_airflow.jobs.registry import now
from openeo_airflow.jobs.tables import process_graphs

Resolver = Callable[[str, str | None], Mapping[str, Any] | None]
USER_NAMESPACE = "user"


class UserProcesses:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, owner: str, process_id: str, process: dict[str, Any]) -> None:
        document = {**process, "id": process_id}
        key = (process_graphs.c.owner == owner) & (process_graphs.c.id == process_id)
        with self._engine.begin() as conn:
            exists = conn.execute(select(process_graphs.c.id).where(key)).first()
            if exists:
                conn.execute(
                    update(process_graphs).where(key).values(process=document, updated=now())
                )
            else:
                stamp = now()
                conn.execute(
                    insert(process_graphs).values(
                        owner=owner, id=process_id, process=document, created=stamp, updated=stamp
                    )
                )

    def get(self, owner: str, process_id: str) -> dict[str, Any]:
        found = self.find(owner, process_id)
        if found is None:
            raise ProcessGraphNotFound(identifier=process_id)
        return found

    def find(self, owner: str, process_id: str) -> dict[str, Any] | None:
        query = select(process_graphs.c.process).where(
            process_graphs.c.owner == owner, process_graphs.c.id == process_id
        )
        with self._engine.connect() as conn:
            row = conn.execute(query).first()
        return dict(row[0]) if row else None

    def of(self, owner: str) -> list[dict[str, Any]]:
        query = (
            select(process_graphs.c.process)
            .where(process_graphs.c.owner == owner)
            .order_by(process_graphs.c.id)
        )
        with self._engine.connect() as conn:
            return [dict(row[0]) for row in conn.execute(query)]

    def delete(self, owner: str, process_id: str) -> None:
        self.get(owner, process_id)
        with self._engine.begin() as conn:
            conn.execute(
                delete(process_graphs).where(
                    process_graphs.c.owner == owner, process_graphs.c.id == process_id
                )
            )

    def by_id(self, owner: str) -> dict[str, dict[str, Any]]:
        return {p["id"]: p for p in self.of(owner)}

    def resolver(self, owner: str) -> Resolver:
        """Looks up the owner's processes (namespace absent or ``user``) for the evaluator."""

        def resolve(process_id: str, namespace: str | None) -> Mapping[str, Any] | None:
            if namespace not in (None, USER_NAMESPACE):
                return None
            return self.find(owner, process_id)

        return resolve
