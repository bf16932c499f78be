"""Security defaults (issue 8), checked over the source and at run time: weights-only checkpoint loads, safe
YAML, loopback-only UIs and dashboards, no secrets in the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _python_files():
    for folder in ("study", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _calls(tree, dotted: str):
    mod, _, attr = dotted.rpartition(".")
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == attr
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == mod
        ):
            yield node


def test_every_torch_load_is_weights_only():
    offenders = []
    for f in _python_files():
        for call in _calls(ast.parse(f.read_text()), "torch.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                offenders.append(f"{f.relative_to(ROOT)}:{call.lineno}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


def test_yaml_is_loaded_safely():
    offenders = []
    for f in _python_files():
        tree = ast.parse(f.read_text())
        # loaders this module derives from yaml.SafeLoader (the spec's, which also refuses duplicate keys)
        safe_subclasses = {
            node.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and any(isinstance(b, ast.Attribute) and b.attr in ("SafeLoader", "CSafeLoader") for b in node.bases)
        }
        for name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            for call in _calls(tree, name):
                kw = {k.arg: k.value for k in call.keywords}
                loader = kw.get("Loader") or (call.args[1] if len(call.args) > 1 else None)
                if (
                    name.endswith("unsafe_load")
                    or name.endswith("full_load")
                    or not (
                        (isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader"))
                        or (isinstance(loader, ast.Name) and loader.id in safe_subclasses)
                    )
                ):
                    offenders.append(f"{f.relative_to(ROOT)}:{call.lineno}")
    assert not offenders, f"unsafe YAML loading: {offenders}"


def test_uis_bind_to_loopback():
    # servers started by study itself (the MLflow UI, dashboards) never listen on all interfaces
    offenders = [
        f"{f.relative_to(ROOT)}"
        for f in (ROOT / "study").rglob("*.py")
        if re.search(r"""["']0\.0\.0\.0["']|["']::["']""", f.read_text())
    ]
    assert not offenders, f"binds to all interfaces: {offenders}"


def _matches_in_tracked_files(files: list[str], patterns: list) -> list[str]:
    """``file: pattern`` for each tracked text file (up to 2 MB) where a pattern occurs."""
    hits = []
    for name in files:
        path = ROOT / name
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        hits += [f"{name}: {p.pattern}" for p in patterns if p.search(text)]
    return hits


def test_no_secrets_in_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    patterns = [
        re.compile(r"AKIA[0-9A-Z]{16}"),  # AWS access key id
        re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
        re.compile(r"ghp_[A-Za-z0-9]{36}"),  # GitHub token
        re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{30,}"),
        re.compile(r"(?i)postgres(ql)?://[^:\s/]+:(?!\$|PASSWORD)[^@\s$]{6,}@"),  # a literal DB password
    ]
    hits = _matches_in_tracked_files(files, patterns)
    assert not hits, hits


# -- runtime checks of the same defaults -------------------------------------------------------------


def test_study_ui_serves_mlflow_on_loopback_only(tmp_path):
    from types import SimpleNamespace

    from study.reports.ui import server_command

    cmd = server_command(SimpleNamespace(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=tmp_path), 5123)
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"
    assert "0.0.0.0" not in cmd


def test_local_ray_starts_without_a_public_dashboard():
    # a Ray that `study` starts itself (no address, or address="local") has no dashboard or binds it to loopback
    offenders = []
    for f in (ROOT / "study").rglob("*.py"):
        for call in _calls(ast.parse(f.read_text()), "ray.init"):
            kw = {k.arg: k.value for k in call.keywords}
            addr = kw.get("address")
            starts_local = addr is None or (isinstance(addr, ast.Constant) and addr.value == "local")
            if not starts_local:
                continue
            no_dash = isinstance(kw.get("include_dashboard"), ast.Constant) and kw["include_dashboard"].value is False
            loopback = isinstance(kw.get("dashboard_host"), ast.Constant) and kw["dashboard_host"].value == "127.0.0.1"
            if not (no_dash or loopback):
                offenders.append(f"{f.relative_to(ROOT)}:{call.lineno}")
    assert not offenders, f"ray.init may start a dashboard on all interfaces: {offenders}"


def test_cluster_dashboards_stay_inside_the_cluster():
    # VM clusters: the head's dashboard on loopback (reach it with `ray dashboard` / an SSH tunnel);
    # Kubernetes: pods listen on 0.0.0.0 but their Services are ClusterIP (kubectl port-forward), never public
    for f in sorted((ROOT / "cluster").glob("*.yaml")):
        for line in f.read_text().splitlines():
            if "ray start --head" in line:
                assert "--dashboard-host=127.0.0.1" in line, f"{f.name}: {line.strip()}"
    for f in sorted((ROOT / "cluster").rglob("*.yaml")):
        text = f.read_text()
        assert not re.search(r"(?m)^\s*(type|serviceType):\s*[\"']?(NodePort|LoadBalancer)", text), (
            f"{f.relative_to(ROOT)} exposes a service outside the cluster"
        )


def test_spec_yaml_with_python_tags_is_refused(tmp_path):
    from study.tuning.spec import SpecError, load_spec

    marker = tmp_path / "pwned"
    spec = tmp_path / "evil.yaml"
    spec.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(spec)
    assert not marker.exists()


def test_dashboard_definition_with_python_tags_is_refused(tmp_path):
    from study.reports.definitions import DefinitionError, load_dashboard

    marker = tmp_path / "pwned"
    d = tmp_path / "evil.yaml"
    d.write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(DefinitionError):
        load_dashboard(d)
    assert not marker.exists()


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_encoder_checkpoint_that_runs_code_is_refused(tmp_path):
    import pickle

    import torch

    from study.ssl import load_encoder

    marker = tmp_path / "pwned"
    ckpt = tmp_path / "encoder.pt"
    torch.save({"meta": _RunsCode(str(marker)), "state_dict": {}}, ckpt)
    with pytest.raises(pickle.UnpicklingError):
        load_encoder(ckpt)
    assert not marker.exists()


def test_no_pickled_numpy_loads():
    offenders = []
    for f in _python_files():
        for call in _calls(ast.parse(f.read_text()), "np.load"):
            kw = {k.arg: k.value for k in call.keywords}
            if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                offenders.append(f"{f.relative_to(ROOT)}:{call.lineno}")
    assert not offenders, f"np.load(allow_pickle=True): {offenders}"


def test_no_credential_files_or_urls_in_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    names = re.compile(
        r"(?i)(^|/)(\.env(\..*)?|id_(rsa|ed25519|ecdsa)|.*\.(pem|p12|pfx|key)|credentials(\.json)?"
        r"|\.netrc|\.pgpass)$"
    )
    assert not [n for n in files if names.search(n)]
    tokens = [
        re.compile(r"\b[a-z][a-z0-9+.-]*://[^:\s/@'\"]+:(?!\$|\{|<|PASSWORD)[^@\s$/'\"]{6,}@"),  # user:password@host
        re.compile(r"github_pat_[A-Za-z0-9_]{40,}"),
        re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),  # Hugging Face token
        re.compile(r"\bdapi[0-9a-f]{32}\b"),  # Databricks token
        re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),  # Slack token
    ]
    hits = _matches_in_tracked_files(files, tokens)
    assert not hits, hits
