"""Settings from the environment, read once per process by whoever needs them.

Nothing here runs at import time: the DAG processor and Spark executors import this package too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

PREFIX = "OPENEO_AIRFLOW_"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    workspace: Path
    collections_file: Path | None
    airflow_url: str
    airflow_user: str
    airflow_password: str
    sync_max_pixels: int = 50_000_000
    sync_workers: int = 2
    token_ttl_seconds: int = 24 * 3600
    gdal_profile: str = "local"
    secret: str = ""
    oidc_providers: str = ""
    # Engines and the limits of the sizing (see sizing/).
    engine: str = ""  # empty: the sizing picks; else inline, spark-local or spark-k8s
    local_cores: int = 2
    local_memory_mb: int = 8192
    max_executors: int = 16
    max_executor_memory_mb: int = 32768
    max_job_megapixels: int = 200_000
    oom_retries: int = 2
    # spark-k8s: where SparkApplications run and what they mount.
    k8s_namespace: str = "openeo-jobs"
    spark_image: str = "openeo-airflow/spark:latest"
    spark_service_account: str = "openeo-spark"
    workspace_pvc: str = ""
    kubernetes_conn_id: str = "kubernetes_default"
    spark_credentials_secret: str = ""  # a Secret whose keys become env vars (object store)
    spark_driver_pool: str = ""  # node pool label (openeo.org/pool) for drivers: not scaled down
    spark_executor_pool: str = ""  # node pool for executors: the autoscaled one
    # run_udf: "subprocess" (a child process) or "service" (the UDF runtime service on a Unix
    # socket, in its own container on Kubernetes; processes/udf.py). udf_image: that container.
    udf_runner: str = "subprocess"
    udf_socket: str = ""
    udf_image: str = "openeo-airflow/udf:latest"
    # sar_backscatter on archive GRD: the deployment's DEM (a GeoTIFF/COG path or URL GDAL
    # opens, heights in metres); empty: terrain-based coefficients are refused.
    dem: str = ""

    @property
    def jobs_dir(self) -> Path:
        return self.workspace / "jobs"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env

    def get(name: str, default: str) -> str:
        return env.get(PREFIX + name, default)

    home = Path(get("HOME", str(Path.home() / ".openeo-airflow"))).expanduser().resolve()
    collections = get("COLLECTIONS", "")
    return Settings(
        home=home,
        database_url=get("DATABASE_URL", f"sqlite:///{home / 'openeo.db'}"),
        workspace=Path(get("WORKSPACE", str(home / "workspace"))),
        collections_file=Path(collections) if collections else None,
        airflow_url=get("AIRFLOW_URL", "http://localhost:8080").rstrip("/"),
        airflow_user=get("AIRFLOW_USER", "openeo-service"),
        airflow_password=get("AIRFLOW_PASSWORD", ""),
        sync_max_pixels=int(get("SYNC_MAX_PIXELS", "50000000")),
        sync_workers=int(get("SYNC_WORKERS", "2")),
        token_ttl_seconds=int(get("TOKEN_TTL_SECONDS", str(24 * 3600))),
        gdal_profile=get("GDAL_PROFILE", "local"),
        secret=get("SECRET", ""),
        oidc_providers=get("OIDC_PROVIDERS", ""),
        engine=get("ENGINE", ""),
        local_cores=int(get("LOCAL_CORES", str(os.cpu_count() or 2))),
        local_memory_mb=int(get("LOCAL_MEMORY_MB", "8192")),
        max_executors=int(get("MAX_EXECUTORS", "16")),
        max_executor_memory_mb=int(get("MAX_EXECUTOR_MEMORY_MB", "32768")),
        max_job_megapixels=int(get("MAX_JOB_MEGAPIXELS", "200000")),
        oom_retries=int(get("OOM_RETRIES", "2")),
        k8s_namespace=get("K8S_NAMESPACE", "openeo-jobs"),
        spark_image=get("SPARK_IMAGE", "openeo-airflow/spark:latest"),
        spark_service_account=get("SPARK_SERVICE_ACCOUNT", "openeo-spark"),
        workspace_pvc=get("WORKSPACE_PVC", ""),
        kubernetes_conn_id=get("KUBERNETES_CONN_ID", "kubernetes_default"),
        spark_credentials_secret=get("SPARK_CREDENTIALS_SECRET", ""),
        spark_driver_pool=get("SPARK_DRIVER_POOL", ""),
        spark_executor_pool=get("SPARK_EXECUTOR_POOL", ""),
        udf_runner=get("UDF_RUNNER", "subprocess"),
        udf_socket=get("UDF_SOCKET", ""),
        udf_image=get("UDF_IMAGE", "openeo-airflow/udf:latest"),
        dem=get("DEM", ""),
    )
