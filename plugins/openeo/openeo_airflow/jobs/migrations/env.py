"""Alembic environment: the connection is handed over by ``openeo_airflow.jobs.database``."""

from alembic import context

from openeo_airflow.jobs.tables import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
