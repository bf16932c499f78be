"""Security defaults, checked over the source: weights-only checkpoint loads, safe YAML, loopback-only UIs,
no secrets in the repository."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _python_files():
    for folder in ("study", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _calls(tree, dotted: str):
    mod, _, attr = dotted.rpartition(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attr:
            if isinstance(node.func.value, ast.Name) and node.func.value.id == mod:
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
        for name in ("yaml.load", "yaml.load_all", "yaml.unsafe_load", "yaml.full_load"):
            for call in _calls(tree, name):
                kw = {k.arg: k.value for k in call.keywords}
                loader = kw.get("Loader") or (call.args[1] if len(call.args) > 1 else None)
                if name.endswith("unsafe_load") or name.endswith("full_load") or not (
                        isinstance(loader, ast.Attribute) and loader.attr in ("SafeLoader", "CSafeLoader")):
                    offenders.append(f"{f.relative_to(ROOT)}:{call.lineno}")
    assert not offenders, f"unsafe YAML loading: {offenders}"


def test_uis_bind_to_loopback():
    # servers started by study itself (the MLflow UI, dashboards) never listen on all interfaces
    offenders = [f"{f.relative_to(ROOT)}" for f in (ROOT / "study").rglob("*.py")
                 if re.search(r"""["']0\.0\.0\.0["']|["']::["']""", f.read_text())]
    assert not offenders, f"binds to all interfaces: {offenders}"


def test_no_secrets_in_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    patterns = [
        re.compile(r"AKIA[0-9A-Z]{16}"),                                    # AWS access key id
        re.compile(r"-----BEGIN (RSA |EC |OPENSSH )?PRIVATE KEY-----"),
        re.compile(r"ghp_[A-Za-z0-9]{36}"),                                  # GitHub token
        re.compile(r"(?i)aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+]{30,}"),
        re.compile(r"(?i)postgres(ql)?://[^:\s/]+:(?!\$|PASSWORD)[^@\s$]{6,}@"),  # a literal DB password
    ]
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
    assert not hits, hits
