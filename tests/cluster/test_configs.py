"""Cluster configs: Ray's own launcher validation, KubeRay manifests against their schema and Kubernetes'
pod schema, the MLflow server manifests against Kubernetes' schemas, and no secrets or stray placeholders."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr
from ray.autoscaler._private.util import prepare_config, validate_config

from study.cli import build_parser

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
K8S_VERSION = kubernetes_validate.latest_version()
# the fields a user must fill, all documented in cluster/README.md
ALLOWED_PLACEHOLDERS = {"YOUR-BUCKET", "YOUR-PROJECT-ID", "YOUR-REGISTRY"}


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_launcher_config_passes_ray_validation(name):
    cfg = yaml.safe_load((CLUSTER / name).read_text())
    full = prepare_config(cfg)
    validate_config(full)
    gpu_types = [t for t, spec in full["available_node_types"].items() if spec["resources"].get("GPU", 0) > 0]
    assert gpu_types, "autoscaling GPU worker types"
    assert all(full["available_node_types"][t]["min_workers"] == 0 for t in gpu_types)
    assert full["available_node_types"][full["head_node_type"]]["resources"].get("GPU", 0) == 0
    assert any("pip install" in c and "/home/ubuntu/study" in c for c in full["setup_commands"])


def _manifests(name):
    return list(yaml.safe_load_all((CLUSTER / name).read_text()))


@pytest.mark.parametrize("name", ["kuberay/raycluster.yaml", "kuberay/rayjob.yaml"])
def test_kuberay_manifests_match_schema_and_ray_parses_them(name):
    schema = json.loads((CLUSTER / "kuberay" / "schema.json").read_text())
    for doc in _manifests(name):
        jsonschema.validate(doc, schema)
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
        for g in groups:  # each pod template against Kubernetes' own schema
            kubernetes_validate.validate(
                {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"}, "template": g["template"]},
                K8S_VERSION,
                strict=True,
            )
        # Ray's KubeRay autoscaler derives its config from the CR: it must parse and validate
        cr = {"metadata": {"name": doc["metadata"]["name"], "namespace": "default"}, "spec": spec}
        derived = _derive_autoscaling_config_from_ray_cr(cr)
        validate_config(derived)
        assert any(t.get("resources", {}).get("GPU", 0) >= 1 for t in derived["available_node_types"].values())


def test_rayjob_entrypoint_is_a_valid_study_launch():
    (job,) = _manifests("kuberay/rayjob.yaml")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["study", "launch"]
    args = build_parser().parse_args(argv[1:])
    assert args.name and args.address == "auto" and args.storage
    assert (CLUSTER.parent / args.spec.removeprefix("/app/")).exists()
    assert job["spec"]["backoffLimit"] >= 1


def test_mlflow_server_manifests_match_kubernetes_schemas():
    kinds = []
    for doc in _manifests("mlflow/mlflow.yaml"):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds.append(doc["kind"])
    assert kinds.count("Deployment") == 1 and "StatefulSet" in kinds
    text = (CLUSTER / "mlflow" / "mlflow.yaml").read_text()
    assert "postgresql://" in text and "--artifacts-destination s3://" in text


def test_no_secrets_and_only_documented_placeholders():
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.rglob("*"):
        if not path.is_file() or path.name == "schema.json":
            continue
        text = path.read_text()
        for token in set(re.findall(r"YOUR-[A-Z-]+", text)):
            assert token in ALLOWED_PLACEHOLDERS, (path, token)
            assert token in readme, f"{token} is not documented in cluster/README.md"
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path  # AWS access key ids
        assert not re.search(r"(?i)(password|secret)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}", text), path
