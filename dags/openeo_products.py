"""Airflow DAG file: one DAG per registered openEO product (see openeo_airflow.airflow.products).

The DAG processor re-parses this file every ``[dag_processor] min_file_process_interval``
(30 s by default), reading the products table each time: a registered product appears, a
deleted one disappears, without restarting anything.
"""

from openeo_airflow.airflow.products import build_product_dags, registered_products

globals().update(build_product_dags(registered_products()))
