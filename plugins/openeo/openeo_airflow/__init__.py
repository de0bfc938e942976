"""openeo-airflow: an openEO backend whose batch jobs run as Airflow DAG runs."""

__version__ = "0.1.0"
