"""SQLAlchemy tables of the job registry (schema changes go through Alembic migrations)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("password_hash", String(256), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("user_id", String(128), nullable=False, index=True),
    Column("expires", DateTime(timezone=True), nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False, index=True),
    Column("title", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("process", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("progress", Float, nullable=True),
    Column("plan", String(64), nullable=True),
    Column("run_id", String(96), nullable=True),
    Column("budget", Float, nullable=True),
    Column("job_options", JSON, nullable=False, default=dict),
    Column("usage", JSON, nullable=False, default=dict),
    Column("sizing", JSON, nullable=False, default=dict),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

process_graphs = Table(
    "process_graphs",
    metadata,
    Column("owner", String(128), primary_key=True),
    Column("id", String(128), primary_key=True),
    Column("process", JSON, nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
)

job_logs = Table(
    "job_logs",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("job_id", String(64), nullable=False, index=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("level", String(8), nullable=False),
    Column("stage", String(32), nullable=True),
    Column("message", Text, nullable=False),
    Column("data", JSON, nullable=True),
)

# Recurring products (see core/products.py); a deleted product keeps its row (``deleted`` set) so
# its published collection stays reachable and its id is not reused by someone else.
products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(128), nullable=False, index=True),
    Column("title", Text, nullable=True),
    Column("description", Text, nullable=True),
    Column("process", JSON, nullable=True),
    Column("process_graph_id", String(128), nullable=True),
    Column("arguments", JSON, nullable=False, default=dict),
    Column("schedule", String(128), nullable=True),
    Column("trigger_assets", JSON, nullable=False, default=list),
    Column("window_rule", String(32), nullable=False),
    Column("timezone", String(64), nullable=False, default="UTC", server_default="UTC"),
    Column("job_options", JSON, nullable=False, default=dict),
    Column("paused", Boolean, nullable=False, default=False),
    Column("start", DateTime(timezone=True), nullable=True),
    Column("created", DateTime(timezone=True), nullable=False),
    Column("updated", DateTime(timezone=True), nullable=False),
    Column("deleted", DateTime(timezone=True), nullable=True),
)
