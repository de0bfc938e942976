"""Products in SQL: the table the API writes and the products DAG file reads on every parse."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from openeo_airflow.core.products import Product, ProductNotFound
from openeo_airflow.jobs.registry import now
from openeo_airflow.jobs.tables import products

COLUMNS = (
    "id",
    "owner",
    "title",
    "description",
    "process",
    "process_graph_id",
    "arguments",
    "schedule",
    "trigger_assets",
    "timezone",
    "job_options",
    "paused",
    "start",
    "created",
    "updated",
    "deleted",
)


class ProductStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def put(self, product: Product) -> Product:
        """Insert, or revive a deleted product of the same owner (its collection keeps growing)."""
        stamp = now()
        product.created = product.created or stamp
        product.updated = stamp
        product.deleted = None
        row = _row(product)
        with self._engine.begin() as conn:
            exists = conn.execute(select(products.c.id).where(products.c.id == product.id)).first()
            if exists:
                conn.execute(update(products).where(products.c.id == product.id).values(**row))
            else:
                conn.execute(insert(products).values(**row))
        return product

    def find(self, product_id: str) -> Product | None:
        """Any product by id, deleted or not, whoever owns it."""
        with self._engine.connect() as conn:
            row = conn.execute(select(products).where(products.c.id == product_id)).mappings()
            found = row.first()
        return _product(found) if found else None

    def get(self, owner: str, product_id: str, *, deleted: bool = False) -> Product:
        """The owner's product; ``ProductNotFound`` for other owners' (never leak existence)."""
        product = self.find(product_id)
        if product is None or product.owner != owner or (product.deleted and not deleted):
            raise ProductNotFound(identifier=product_id)
        return product

    def of(self, owner: str) -> list[Product]:
        query = (
            select(products)
            .where(products.c.owner == owner, products.c.deleted.is_(None))
            .order_by(products.c.id)
        )
        with self._engine.connect() as conn:
            return [_product(row) for row in conn.execute(query).mappings()]

    def active(self) -> list[Product]:
        """Every product that has a DAG (the DAG file's view)."""
        query = select(products).where(products.c.deleted.is_(None)).order_by(products.c.id)
        with self._engine.connect() as conn:
            return [_product(row) for row in conn.execute(query).mappings()]

    def set_paused(self, product_id: str, paused: bool) -> None:
        self._set(product_id, paused=paused)

    def mark_deleted(self, product_id: str) -> None:
        self._set(product_id, deleted=now())

    def _set(self, product_id: str, **values: Any) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                update(products).where(products.c.id == product_id).values(**values, updated=now())
            )


def _row(product: Product) -> dict[str, Any]:
    row = {name: getattr(product, name) for name in COLUMNS}
    row["window_rule"] = product.window
    return row


def _utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes even for timezone-aware columns.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _product(row: Any) -> Product:
    values = {name: row[name] for name in COLUMNS}
    for name in ("start", "created", "updated", "deleted"):
        values[name] = _utc(values[name])
    values["arguments"] = values["arguments"] or {}
    values["trigger_assets"] = list(values["trigger_assets"] or [])
    values["job_options"] = values["job_options"] or {}
    return Product(window=row["window_rule"], **values)
