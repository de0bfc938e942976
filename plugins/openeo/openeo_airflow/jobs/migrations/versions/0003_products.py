"""Recurring products (``/products``): one Airflow DAG each.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(128), nullable=False, index=True),
        sa.Column("title", sa.Text, nullable=True),
        sa.Column("description", sa.Text, nullable=True),
        sa.Column("process", sa.JSON, nullable=True),
        sa.Column("process_graph_id", sa.String(128), nullable=True),
        sa.Column("arguments", sa.JSON, nullable=False),
        sa.Column("schedule", sa.String(128), nullable=True),
        sa.Column("trigger_assets", sa.JSON, nullable=False),
        sa.Column("window_rule", sa.String(32), nullable=False),
        sa.Column("job_options", sa.JSON, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("products")
