#!/usr/bin/env bash
# MLflow tracking server for a Ray launcher cluster, run on the head node (where the study driver runs;
# trials never write to MLflow, so it binds to loopback). Backend and artifact locations come from the
# environment:
#   MLFLOW_BACKEND_STORE_URI      e.g. postgresql://mlflow:PASSWORD@DB-HOST:5432/mlflow (a managed RDS / Cloud SQL)
#   MLFLOW_ARTIFACTS_DESTINATION  e.g. s3://YOUR-BUCKET/mlartifacts or gs://YOUR-BUCKET/mlartifacts
# Then: study launch SPEC --tracking-uri http://127.0.0.1:5000 ...; from your laptop:
#   ray attach cluster/aws.yaml -p 5000   and open http://127.0.0.1:5000
set -euo pipefail
: "${MLFLOW_BACKEND_STORE_URI:?set MLFLOW_BACKEND_STORE_URI (PostgreSQL URI)}"
: "${MLFLOW_ARTIFACTS_DESTINATION:?set MLFLOW_ARTIFACTS_DESTINATION (s3:// or gs:// URI)}"
exec mlflow server --backend-store-uri "$MLFLOW_BACKEND_STORE_URI" \
  --artifacts-destination "$MLFLOW_ARTIFACTS_DESTINATION" --host 127.0.0.1 --port "${MLFLOW_PORT:-5000}"
