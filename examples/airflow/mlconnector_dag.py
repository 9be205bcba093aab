"""Airflow DAG: every tenant's pairs as tasks, every 15 minutes (Airflow 2.6 or later, for skip_on_exit_code).

Each task runs `mlconnector --tenant NAME sync PAIR` on a worker where mlconnector is installed (or use the
image in ../../Dockerfile with a KubernetesPodOperator). Exit 75, another run of the pair holding its lock, marks
the task skipped, not failed. The worker's environment holds MLCONNECTOR_STATE_URL and each tenant's secrets
under its own names (MLCONNECTOR_ACME_ZOHO_CLIENT_SECRET ...); each tenant's connections.toml is in
/etc/mlconnector/tenants/NAME/. See docs/operations.md, "Containers and schedulers".
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.operators.bash import BashOperator  # Airflow 3: airflow.providers.standard.operators.bash

# tenant -> its pairs
TENANT_PAIRS = {
    "acme": ["nav-zoho", "bc-zoho"],
    "globex": ["nav-zoho"],
}
LOCK_HELD = 75  # mlconnector's exit code when another run holds the pair's lock


def command(tenant: str, pair: str) -> str:
    return f"mlconnector --tenant {tenant} sync {pair}"


with DAG(
    dag_id="mlconnector_sync",
    schedule=timedelta(minutes=15),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # a slow run is not overtaken by the next (the pair's lock would exit 75 anyway)
    default_args={"retries": 0},  # a pair's retry is its next run; failed records wait in its replay queue
    tags=["mlconnector"],
) as dag:
    for tenant, pairs in TENANT_PAIRS.items():
        for pair in pairs:
            BashOperator(
                task_id=f"{tenant}.{pair}",
                bash_command=command(tenant, pair),
                skip_on_exit_code=LOCK_HELD,
                execution_timeout=timedelta(hours=1),
            )
