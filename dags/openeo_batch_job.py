"""Airflow DAG file: the generic openEO batch job DAG (see openeo_airflow.airflow.batch_dag)."""

from openeo_airflow.airflow.batch_dag import build_batch_dag

dag = build_batch_dag()
