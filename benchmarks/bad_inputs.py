"""Malformed inputs through the real CLI: each gives a clear message and exit 2, and leaves no study behind.

Every case builds its input in a fresh temporary folder (a spec, a dataset, a storage directory, a
closed port), runs ``study ...`` in a subprocess against a fresh storage directory and a temporary MLflow
store (``--tracking-uri`` and ``MLFLOW_TRACKING_URI`` both point at ``<tmp>/mlflow.db``), and checks:

- the exit code is 2 (bad input, docs/architecture.md), with no Python traceback;
- stderr names the field or file and says how to fix it (case-specific substrings);
- the storage directory is left exactly as it was (no study directory, no half-written cache) and the
  MLflow store holds no run.

The ``nan_loss`` case is a real study (a learning rate that makes the loss overflow): it must complete
with exit 0, and its LNL trial's MLflow run must be FAILED with the non-finite reason in ``study.error``.

``unwritable_storage``: as root, ``chmod 0o500`` does not stop writes, so the case then uses a storage
path below a regular file (the same "cannot create the study directory" failure); it says which it used.

Output: one line per case ``bad_inputs.<case>: ok|FAIL (exit N, X.Xs) <first line of the message>`` and
``bad_inputs_passed: K/N``. ``--quick`` leaves out the NaN study (the only case that starts Ray).
"""

from __future__ import annotations

import copy
import os
import shutil
import socket
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

#: a tiny valid spec: synthetic 8 px images, random init, CE, one trial per cell; cases break one thing
BASE_SPEC: dict = {
    "name": "bad",
    "datasets": [{"name": "synthetic", "options": {"num_samples": 60, "num_classes": 3, "image_size": 8, "seed": 0}}],
    "noise": {"kinds": ["symmetric"], "rates": [0.2]},
    "ssl": [{"method": "random"}],
    "model": {"backbone": "small_cnn"},
    "lnl": [
        {"algorithm": "ce", "epochs": 2, "batch_size": 16, "fixed": {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05}}
    ],
    "seeds": [0],
    "tuning": {"samples_per_cell": 1},
    "early_stopping": {"enabled": False},
    "resources": {"pretrain": {"cpus": 1}, "trial": {"cpus": 1}},
    "failures": {"max_retries": 0},
}


@dataclass
class Ctx:
    """One case's temporary world."""

    tmp: Path
    storage: Path
    mlflow_db: Path
    #: what a case adapted to this machine (printed with its line)
    note: str = ""
    #: the closed port a case points at
    port: int = 0

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.mlflow_db}"

    def spec(
        self, edit: Callable[[dict], None] | None = None, text: str | None = None, name: str = "spec.yaml"
    ) -> Path:
        p = self.tmp / name
        if text is None:
            data = copy.deepcopy(BASE_SPEC)
            if edit:
                edit(data)
            text = yaml.safe_dump(data, sort_keys=False)
        p.write_text(text)
        return p

    def launch(self, spec: Path, *extra: str, tracking: bool = True) -> list[str]:
        args = ["launch", str(spec), "--storage", str(self.storage), "--name", "bad", "--quiet"]
        if tracking:
            args += ["--tracking-uri", self.tracking_uri]
        return args + list(extra)


@dataclass
class Case:
    name: str
    #: builds the inputs and returns the CLI arguments (after ``study``)
    setup: Callable[[Ctx], list[str]]
    #: substrings stderr must contain: the field or file, and the fix
    expect: list[str] | Callable[[Ctx], list[str]] = field(default_factory=list)
    exit_code: int = 2
    #: starts Ray (a real study): subprocess only, and left out by --quick
    slow: bool = False
    #: extra check after the run: returns a problem or None
    after: Callable[[Ctx, Outcome], str | None] | None = None


@dataclass
class Outcome:
    case: str
    code: int
    seconds: float
    stdout: str
    stderr: str
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def message(self) -> str:
        lines = [ln for ln in self.stderr.strip().splitlines() if ln.strip()]
        if "Traceback (most recent call last)" in self.stderr:  # the exception, not Ray's log lines
            return lines[-1].strip()
        return lines[0].strip() if lines else (self.stdout.strip().splitlines() or [""])[-1]

    def line(self) -> str:
        status = "ok" if self.ok else "FAIL"
        first = self.message if self.ok else "; ".join(self.problems) + f" | {self.message}"
        return f"bad_inputs.{self.case}: {status} (exit {self.code}, {self.seconds:.1f}s) {first[:300]}"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- inputs ------------------------------------------------------------------------------------------


def _png(path: Path, value: int) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, dtype=np.uint8)).save(path)


def _folder_dataset(root: Path, corrupt: bool = False) -> Path:
    for c, v in (("benign", 40), ("malignant", 200)):
        for i in range(4):
            _png(root / c / f"{c}_{i}.png", v + i)
    if corrupt:
        (root / "malignant" / "scan_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not an image")
    return root


def _with_dataset(name: str, options: dict) -> Callable[[dict], None]:
    def edit(s: dict) -> None:
        s["datasets"] = [{"name": name, "options": options}]

    return edit


def _set(path: str, value) -> Callable[[dict], None]:
    """An edit that sets ``a.b[0].c`` (list indices in brackets) to ``value``."""

    def edit(s: dict) -> None:
        parts = path.replace("]", "").replace("[", ".").split(".")
        node = s
        for p in parts[:-1]:
            node = node[int(p)] if p.isdigit() else node[p]
        last = parts[-1]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return edit


_DELETE = object()


def _case_unknown_key(c: Ctx) -> list[str]:
    def edit(s):
        s["lnl"][0]["epoch"] = s["lnl"][0].pop("epochs")

    return c.launch(c.spec(edit))


def _case_corrupt_image(c: Ctx) -> list[str]:
    root = _folder_dataset(c.tmp / "images", corrupt=True)
    return c.launch(c.spec(_with_dataset("folder", {"root": str(root)})))


def _case_folder_missing(c: Ctx) -> list[str]:
    return c.launch(c.spec(_with_dataset("folder", {"root": str(c.tmp / "no_such_images")})))


def _case_manifest_label_column(c: Ctx) -> list[str]:
    root = _folder_dataset(c.tmp / "images")
    rows = ["path,diagnosis"] + [f"{p.relative_to(root)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return c.launch(c.spec(_with_dataset("manifest", {"manifest": str(root / "manifest.csv")})))


def _case_manifest_missing_file(c: Ctx) -> list[str]:
    root = _folder_dataset(c.tmp / "images")
    rows = ["path,label"] + [f"{p.relative_to(root)},{p.parent.name}" for p in sorted(root.rglob("*.png"))]
    rows.append("malignant/lost_scan.png,malignant")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return c.launch(c.spec(_with_dataset("manifest", {"manifest": str(root / "manifest.csv")})))


def _case_manifest_file_missing(c: Ctx) -> list[str]:
    return c.launch(c.spec(_with_dataset("manifest", {"manifest": str(c.tmp / "no_manifest.csv")})))


def _case_medmnist_keys(c: Ctx) -> list[str]:
    import numpy as np

    p = c.tmp / "pathmnist_28.npz"
    rng = np.random.default_rng(0)
    np.savez(
        p, train_images=rng.integers(0, 255, (20, 28, 28, 3), dtype=np.uint8), train_labels=rng.integers(0, 3, (20, 1))
    )
    return c.launch(c.spec(_with_dataset("medmnist", {"path": str(p)})))


def _case_unwritable_storage(c: Ctx) -> list[str]:
    if os.geteuid() == 0:  # root writes through 0o500: use a storage path below a regular file
        blocker = c.tmp / "storage_is_a_file"
        blocker.write_text("not a directory\n")
        c.storage = blocker / "studies"
        c.note = "root: storage below a regular file"
    else:
        c.storage.chmod(stat.S_IRUSR | stat.S_IXUSR)  # 0o500
        c.note = "chmod 0o500"
    return c.launch(c.spec())


def _expect_unwritable(c: Ctx) -> list[str]:
    return ["--storage", "writable"]


def _case_unreachable_tracking(c: Ctx) -> list[str]:
    c.port = closed_port()
    return c.launch(c.spec(), "--tracking-uri", f"http://127.0.0.1:{c.port}", tracking=False)


def _case_tracking_scheme(c: Ctx) -> list[str]:
    return c.launch(c.spec(), "--tracking-uri", "htp://127.0.0.1:5000", tracking=False)


def _case_resume_not_study(c: Ctx) -> list[str]:
    d = c.tmp / "just_a_folder"
    d.mkdir()
    (d / "notes.txt").write_text("not a study\n")
    return ["resume", str(d), "--quiet"]


def _case_status_missing(c: Ctx) -> list[str]:
    return ["status", str(c.tmp / "no_such_study")]


def _case_bad_address(c: Ctx) -> list[str]:
    return c.launch(c.spec(), "--address", "head-node:port")


def _case_address_unreachable(c: Ctx) -> list[str]:
    c.port = closed_port()
    return c.launch(c.spec(), "--address", f"127.0.0.1:{c.port}")


def _case_storage_unknown_user(c: Ctx) -> list[str]:
    args = c.launch(c.spec())
    args[args.index("--storage") + 1] = "~nosuchuser_study/studies"
    return args


def _case_report_out_file(c: Ctx) -> list[str]:
    (c.tmp / "report.html").write_text("an existing file\n")
    return ["report", str(c.tmp), "--out", str(c.tmp / "report.html")]


def _case_bad_name(c: Ctx) -> list[str]:
    args = c.launch(c.spec())
    args[args.index("--name") + 1] = "../escape"
    return args


def _shifted(name: str, **options) -> Callable[[dict], None]:
    """An edit giving the first dataset a shifted test set (``datasets[0].shifted_test``)."""

    def edit(s: dict) -> None:
        s["datasets"][0]["shifted_test"] = {"name": name, "options": options}

    return edit


#: BASE_SPEC's training data as a shifted test set (3 classes, 8 px RGB), for cases to break one thing of
_SHIFTED_SYNTHETIC = {"num_samples": 30, "num_classes": 3, "image_size": 8, "seed": 7}
_WEIGHT_ENV = ("STUDY_IMAGENET_WEIGHTS", "TORCH_HOME")
_saved_env: dict[str, str | None] = {}


def _case_imagenet_weights_missing(c: Ctx) -> list[str]:
    """``ssl: [{method: imagenet}]`` where the weight lookup finds nothing: $STUDY_IMAGENET_WEIGHTS unset and
    torch hub's folder (TORCH_HOME) an empty one, for this case only (``_after_restore_env`` puts them back)."""
    (c.tmp / "torch_home").mkdir()
    _saved_env.update({k: os.environ.get(k) for k in _WEIGHT_ENV})
    os.environ.pop("STUDY_IMAGENET_WEIGHTS", None)
    os.environ["TORCH_HOME"] = str(c.tmp / "torch_home")
    c.note = "TORCH_HOME: an empty folder, $STUDY_IMAGENET_WEIGHTS unset"
    return c.launch(c.spec(lambda s: s.update(ssl=[{"method": "imagenet"}], model={"backbone": "resnet18"})))


def _after_restore_env(c: Ctx, out: Outcome) -> str | None:
    for k, v in _saved_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env.clear()
    return None


def _nan_spec(s: dict, healthy_cell: bool) -> None:
    """An LNL entry whose learning rate overflows the loss in the first steps; with ``healthy_cell`` a
    second entry (its own cell) trains normally, as in a sweep where one configuration diverges."""
    s["name"] = "nan"
    good = copy.deepcopy(s["lnl"][0])
    s["lnl"][0].update(id="ce_diverges", fixed={"optimizer": "sgd", "momentum": 0.9, "lr": 1.0e30})
    if healthy_cell:
        s["lnl"].append({**good, "id": "ce_ok"})


def _binary_spec(c: Ctx) -> Path:
    p = c.tmp / "spec.yaml"
    p.write_bytes(b"name: bad\n\xff\xfe\x00binary")
    return p


def _case_nan(c: Ctx) -> list[str]:
    return c.launch(c.spec(lambda s: _nan_spec(s, healthy_cell=True)))


def _case_nan_every_trial(c: Ctx) -> list[str]:
    return c.launch(c.spec(lambda s: _nan_spec(s, healthy_cell=False)))


def _after_nan(c: Ctx, out: Outcome) -> str | None:
    study_dir = c.storage / "bad"
    if not (study_dir / "state.json").is_file():
        return "no study directory"
    import json

    state = json.loads((study_dir / "state.json").read_text())
    if not state.get("finished_at"):
        return f"study did not complete: stages {state.get('stages')}"
    runs = mlflow_runs(c.mlflow_db)
    failed = [r for r in runs if r["stage"] == "lnl" and r["status"] == "FAILED"]
    if not failed:
        return f"no FAILED lnl run in MLflow ({[(r['stage'], r['status']) for r in runs]})"
    reason = failed[0]["error"] or ""
    if "non-finite" not in reason:
        return f"FAILED run without the non-finite reason (study.error={reason!r})"
    healthy = "ce_ok" in (c.tmp / "spec.yaml").read_text()
    if healthy and not any(r["stage"] == "final" and r["status"] == "FINISHED" for r in runs):
        return "the healthy cell has no FINISHED final run"
    out.stderr = f"trial FAILED in MLflow: {reason}\n" + out.stderr
    return None


# (name, setup, expected stderr substrings)
CASES: list[Case] = [
    Case("spec_unknown_key", _case_unknown_key, ["lnl[0].epoch", "unknown field", "allowed:", "epochs"]),
    Case(
        "unknown_ssl_method",
        lambda c: c.launch(c.spec(_set("ssl[0].method", "simclrr"))),
        ["ssl[0].method", "'simclrr'", "allowed:", "simclr"],
    ),
    Case(
        "unknown_lnl_algorithm",
        lambda c: c.launch(c.spec(_set("lnl[0].algorithm", "coteaching"))),
        ["lnl[0].algorithm", "'coteaching'", "allowed:", "co_teaching"],
    ),
    Case(
        "unknown_dataset",
        lambda c: c.launch(c.spec(_set("datasets[0].name", "nct_crc"))),
        ["datasets[0].name", "'nct_crc'", "allowed:", "nct_crc_he"],
    ),
    Case(
        "unknown_dataset_option",
        lambda c: c.launch(c.spec(_set("datasets[0].options.num_sample", 60))),
        ["datasets[0].options", "num_sample", "allowed:", "num_samples"],
    ),
    Case(
        "noise_rate_negative",
        lambda c: c.launch(c.spec(_set("noise.rates", [-0.1]))),
        ["noise.rates", "-0.1", "[0, 1)"],
    ),
    Case(
        "noise_rate_one", lambda c: c.launch(c.spec(_set("noise.rates", [0.2, 1.0]))), ["noise.rates", "1.0", "[0, 1)"]
    ),
    Case(
        "symmetric_no_majority",
        lambda c: c.launch(c.spec(_set("noise.rates", [0.7]))),
        ["noise.rates", "0.7", "K=3", "below"],
    ),
    Case(
        "pairflip_rate",
        lambda c: c.launch(c.spec(lambda s: s["noise"].update(kinds=["pairflip"], rates=[0.5]))),
        ["noise", "pairflip", "below 0.5"],
    ),
    Case(
        "unknown_noise_kind",
        lambda c: c.launch(c.spec(_set("noise.kinds", ["symetric"]))),
        ["noise.kinds", "'symetric'", "allowed:", "symmetric"],
    ),
    Case(
        "transition_not_stochastic",
        lambda c: c.launch(
            c.spec(
                lambda s: s["noise"].update(
                    kinds=["transition"], options={"transition": [[0.9, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]}
                )
            )
        ),
        ["noise.options.transition", "row 0 sums to 1.1", "row-stochastic"],
    ),
    Case("empty_axis", lambda c: c.launch(c.spec(_set("seeds", []))), ["seeds", "at least one"]),
    Case(
        "optuna_low_above_high",
        lambda c: c.launch(
            c.spec(
                lambda s: s["lnl"][0].update(
                    fixed={"optimizer": "sgd"},
                    search_space={"lr": {"type": "float", "low": 0.2, "high": 0.01, "log": True}},
                )
            )
        ),
        ["lnl[0].search_space.lr", "low (0.2) must be below high (0.01)"],
    ),
    Case(
        "unknown_hyperparameter",
        lambda c: c.launch(c.spec(_set("lnl[0].fixed.learning_rate", 0.1))),
        ["lnl[0].fixed.learning_rate", "not a hyperparameter of LNL algorithm ce", "allowed:", "lr"],
    ),
    Case(
        "hyperparameter_wrong_type",
        lambda c: c.launch(c.spec(_set("lnl[0].fixed.lr", "fast"))),
        ["lnl[0].fixed.lr", "'fast'", "must be a number"],
    ),
    Case(
        "hyperparameter_out_of_range",
        lambda c: c.launch(c.spec(_set("lnl[0].fixed.lr", -0.5))),
        ["lnl[0].fixed.lr", "-0.5", "> 0"],
    ),
    Case(
        "search_bound_out_of_range",
        lambda c: c.launch(
            c.spec(
                lambda s: s["lnl"][0].update(
                    fixed={"optimizer": "sgd"}, search_space={"lr": {"type": "float", "low": -1.0, "high": 0.1}}
                )
            )
        ),
        ["lnl[0].search_space.lr.low", "outside", "> 0"],
    ),
    Case(
        "ssl_hyperparameter_typo",
        lambda c: c.launch(
            c.spec(
                lambda s: s["ssl"].append(
                    {"method": "simclr", "epochs": 1, "batch_size": 16, "hparams": {"temprature": 0.1}}
                )
            )
        ),
        ["ssl[1].hparams.temprature", "not a hyperparameter of SSL method simclr", "temperature"],
    ),
    Case(
        "yaml_syntax_error",
        lambda c: c.launch(
            c.spec(text="name: bad\ndatasets:\n  - name: synthetic\n    options: {num_samples: 60\nnoise: [\n")
        ),
        ["spec.yaml", "not valid YAML", "line"],
    ),
    Case(
        "yaml_duplicate_key",
        lambda c: c.launch(c.spec(text=yaml.safe_dump(BASE_SPEC, sort_keys=False) + "noise: {kinds: [pairflip]}\n")),
        ["spec.yaml", "'noise' appears twice", "line"],
    ),
    Case(
        "yaml_alias",
        lambda c: c.launch(
            c.spec(text=yaml.safe_dump(BASE_SPEC, sort_keys=False) + "description: &a [x, x]\nextra: [*a, *a]\n")
        ),
        ["spec.yaml", "aliases", "write the value out"],
    ),
    Case("spec_not_utf8", lambda c: c.launch(_binary_spec(c)), ["spec.yaml", "not UTF-8"]),
    Case(
        "head_hidden_negative",
        lambda c: c.launch(c.spec(_set("lnl[0].head", {"hidden": [-5]}))),
        ["lnl[0].head.hidden", "greater than 0"],
    ),
    Case("seed_negative", lambda c: c.launch(c.spec(_set("seeds", [-1]))), ["seeds[0]", "greater than or equal"]),
    Case("seed_too_large", lambda c: c.launch(c.spec(_set("seeds", [2**32]))), ["seeds[0]", "less than"]),
    Case("seed_boolean", lambda c: c.launch(c.spec(_set("seeds", [True]))), ["seeds[0]", "integer"]),
    Case(
        "split_fractions_sum",
        lambda c: c.launch(c.spec(_set("datasets[0].splits", {"val_fraction": 0.5, "test_fraction": 0.5}))),
        ["datasets[0].splits", "below 1"],
    ),
    Case(
        "noise_exact_not_bool",
        lambda c: c.launch(c.spec(_set("noise.options", {"exact": "sometimes"}))),
        ["noise.options.exact", "'sometimes'", "true, false"],
    ),
    Case(
        "ssl_epochs_unknown_dataset",
        lambda c: c.launch(
            c.spec(lambda s: s["ssl"].append({"method": "simclr", "epochs": {"synthtic": 2}, "batch_size": 16}))
        ),
        ["ssl[1].epochs.synthtic", "not a dataset of this spec", "synthetic"],
    ),
    Case("name_too_long", lambda c: c.launch(c.spec(_set("name", "n" * 300))), ["name", "pattern"]),
    Case(
        "cross_product_too_large",
        lambda c: c.launch(
            c.spec(
                lambda s: s.update(
                    seeds=list(range(1000)), noise={"kinds": ["symmetric"], "rates": [i / 1000 for i in range(300)]}
                )
            )
        ),
        ["cross-product", "split the study"],
    ),
    Case(
        "spec_missing",
        lambda c: c.launch(c.tmp / "no_such_spec.yaml"),
        ["no_such_spec.yaml", "no such file", "search_spaces/smoke.yaml"],
    ),
    Case(
        "dataset_folder_missing",
        _case_folder_missing,
        ["datasets[0]", "no_such_images", "not a directory", "sub-folder"],
    ),
    Case("corrupt_image", _case_corrupt_image, ["datasets[0]", "scan_corrupt.png", "cannot decode", "skip_corrupt"]),
    Case(
        "manifest_label_column",
        _case_manifest_label_column,
        ["manifest.csv", "no column 'label'", "diagnosis", "label_column"],
    ),
    Case(
        "manifest_missing_image",
        _case_manifest_missing_file,
        ["manifest.csv:10", "lost_scan.png", "does not exist", "fix"],
    ),
    Case("manifest_csv_missing", _case_manifest_file_missing, ["datasets[0]", "no_manifest.csv", "does not exist"]),
    Case(
        "medmnist_missing_keys",
        _case_medmnist_keys,
        ["pathmnist_28.npz", "missing arrays", "val_images", "test_labels"],
    ),
    Case("unwritable_storage", _case_unwritable_storage, _expect_unwritable),
    Case(
        "unreachable_tracking_server",
        _case_unreachable_tracking,
        lambda c: ["--tracking-uri", f"127.0.0.1:{c.port}", "unreachable", "mlflow server"],
    ),
    Case("tracking_uri_scheme", _case_tracking_scheme, ["--tracking-uri", "'htp'", "allowed:", "http"]),
    Case("resume_not_a_study", _case_resume_not_study, ["just_a_folder", "not a study directory", "study launch"]),
    Case("status_missing_dir", _case_status_missing, ["no_such_study", "not a study directory"]),
    Case("bad_address", _case_bad_address, ["--address", "'head-node:port'", "HOST:PORT", "auto"]),
    Case(
        "address_unreachable",
        _case_address_unreachable,
        lambda c: ["--address", f"127.0.0.1:{c.port}", "no Ray", "ray start --head"],
    ),
    Case("storage_unknown_user", _case_storage_unknown_user, ["--storage", "~nosuchuser_study", "absolute path"]),
    Case("report_out_is_file", _case_report_out_file, ["--out", "report.html", "is a file, not a folder"]),
    Case("ui_port_out_of_range", lambda c: ["ui", str(c.tmp), "--port", "99999"], ["--port", "not a TCP port"]),
    Case("ui_port_zero", lambda c: ["ui", str(c.tmp), "--port", "0"], ["--port", "not a TCP port"]),
    Case("bad_study_name", _case_bad_name, ["--name", "'../escape'", "plain directory name"]),
    Case(
        "shifted_test_other_classes",
        lambda c: c.launch(c.spec(_shifted("synthetic", **{**_SHIFTED_SYNTHETIC, "num_classes": 4}))),
        ["datasets[0].shifted_test", "not classes of synthetic: class_3", "class_0, class_1, class_2, in that order"],
    ),
    Case(
        "shifted_test_channels",
        lambda c: c.launch(c.spec(_shifted("synthetic", **_SHIFTED_SYNTHETIC, channels=1))),
        ["datasets[0].shifted_test", "1-channel", "set shifted_test.options.channels: 3"],
    ),
    Case(
        "shifted_test_folder_missing",
        lambda c: c.launch(c.spec(_shifted("folder", root=str(c.tmp / "no_such_shifted")))),
        ["datasets[0].shifted_test", "no_such_shifted", "not a directory", "sub-folder"],
    ),
    # search_spaces/azizi2021.yaml before its fix: a manifest shifted test given its folder, not its CSV
    Case(
        "shifted_test_manifest_root",
        lambda c: c.launch(c.spec(_shifted("manifest", root=str(c.tmp / "cxr_shifted")))),
        ["datasets[0].shifted_test.options", "the option manifest", "is required"],
    ),
    Case(
        "imagenet_weights_missing",
        _case_imagenet_weights_missing,
        lambda c: ["ssl[0].method", str(c.tmp / "torch_home" / "hub" / "checkpoints"), "$STUDY_IMAGENET_WEIGHTS"],
        after=_after_restore_env,
    ),
    Case(
        "noise_groups_without_kind",
        lambda c: c.launch(c.spec(lambda s: s["noise"].update(options={"groups": [[0, 1]]}))),
        ["noise.options.groups", "'class_dependent'", "add class_dependent to noise.kinds"],
    ),
    Case(
        "noise_transition_without_kind",
        lambda c: c.launch(
            c.spec(
                lambda s: s["noise"].update(options={"transition": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]})
            )
        ),
        ["noise.options.transition", "add transition to noise.kinds"],
    ),
    Case(
        "noise_class_scale_without_kind",
        lambda c: c.launch(c.spec(lambda s: s["datasets"][0].update(noise_class_scale={"class_0": 0.5}))),
        ["datasets[0].noise_class_scale", "class_dependent noise only", "add class_dependent to noise.kinds"],
    ),
    Case(
        "noise_class_scale_unknown_class",
        lambda c: c.launch(
            c.spec(
                lambda s: (
                    s["noise"].update(kinds=["symmetric", "class_dependent"]),
                    s["datasets"][0].update(noise_groups=[[0, 1]], noise_class_scale={"abnormal": 0.5}),
                )
            )
        ),
        ["noise", "'abnormal' is not a class of this dataset", "class_0, class_1, class_2"],
    ),
    Case(
        "cpus_beyond_machine",
        lambda c: c.launch(c.spec(lambda s: s["resources"]["trial"].update(cpus=4096))),
        ["resources.trial.cpus 4096", "this machine has", "lower it"],
    ),
    Case(
        "resolution_unbounded",
        lambda c: c.launch(c.spec(lambda s: s.setdefault("model", {}).update(resolution=100000))),
        ["model.resolution", "less than or equal to 4096"],
    ),
    Case("nan_loss", _case_nan, [], exit_code=0, slow=True, after=_after_nan),
    # every tuning trial of the study diverges: no cell has a best configuration for stage final
    Case("nan_loss_every_trial", _case_nan_every_trial, [], exit_code=0, slow=True, after=_after_nan),
]


# -- running and checking ----------------------------------------------------------------------------


def mlflow_runs(db: Path) -> list[dict]:
    """Runs in an MLflow sqlite store (read with sqlite3: no MLflow import), with stage and error tags."""
    if not db.is_file():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if "runs" not in tables:
            return []
        out = []
        for run_id, status in con.execute("select run_uuid, status from runs"):
            tags = dict(con.execute("select key, value from tags where run_uuid = ?", (run_id,)))
            out.append(
                {"run_id": run_id, "status": status, "stage": tags.get("study.stage"), "error": tags.get("study.error")}
            )
        return out
    finally:
        con.close()


def _snapshot(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    try:
        return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    except OSError:
        return ["<unreadable>"]


def _run_cli(args: list[str], ctx: Ctx, in_process: bool, timeout: float) -> tuple[int, str, str]:
    env_uri = ctx.tracking_uri
    if in_process:
        import contextlib
        import io

        from study.cli import main

        out, err = io.StringIO(), io.StringIO()
        old = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = env_uri
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = main(args)
                except SystemExit as e:  # argparse
                    code = e.code if isinstance(e.code, int) else 2
                except Exception:  # an uncaught error is a failed case, with its traceback as the message
                    import traceback

                    traceback.print_exc()
                    code = 1
        finally:
            if old is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = old
        return code, out.getvalue(), err.getvalue()
    env = {**os.environ, "MLFLOW_TRACKING_URI": env_uri, "PYTHONUNBUFFERED": "1"}
    env.pop("RAY_ADDRESS", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "study.cli", *args],
            cwd=ctx.tmp,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        return (
            124,
            (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""),
            f"timed out after {timeout:.0f}s\n"
            + ((e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else e.stderr) or ""),
        )
    return proc.returncode, proc.stdout, proc.stderr


def run_case(case: Case, workdir: Path | None = None, in_process: bool = False, timeout: float = 600) -> Outcome:
    """Run one case in a fresh temporary world and check it."""
    tmp = Path(tempfile.mkdtemp(prefix=f"bad_inputs_{case.name}_", dir=workdir))
    ctx = Ctx(tmp=tmp, storage=tmp / "storage", mlflow_db=tmp / "mlflow.db")
    ctx.storage.mkdir()
    try:
        args = case.setup(ctx)
        storage_before = _snapshot(ctx.storage)
        t0 = time.perf_counter()
        code, stdout, stderr = _run_cli(args, ctx, in_process, timeout)
        seconds = time.perf_counter() - t0
        out = Outcome(case.name, code, seconds, stdout, stderr, [])
        if code != case.exit_code:
            out.problems.append(f"exit {code}, expected {case.exit_code}")
        if "Traceback (most recent call last)" in stderr:
            out.problems.append("traceback on stderr")
        expect = case.expect(ctx) if callable(case.expect) else case.expect
        missing = [s for s in expect if s not in stderr]
        if missing:
            out.problems.append(f"stderr lacks {missing}")
        if case.exit_code == 2:
            try:
                ctx.storage.chmod(0o700) if ctx.storage.is_dir() else None
            except OSError:
                pass
            left = [p for p in _snapshot(ctx.storage) if p not in storage_before]
            if left:
                out.problems.append(f"left in storage: {left[:4]}")
            studies = [p for p in tmp.rglob("state.json")]
            if studies:
                out.problems.append(f"study directory left: {studies[0].parent}")
            runs = mlflow_runs(ctx.mlflow_db)
            if runs:
                out.problems.append(f"{len(runs)} MLflow run(s) left")
        if case.after is not None:
            problem = case.after(ctx, out)
            if problem:
                out.problems.append(problem)
        note = ctx.note
        if note:
            out.stderr = out.stderr.rstrip() + f"\n[{note}]" if out.stderr.strip() else f"[{note}]"
            if out.ok:  # keep the note visible on the printed line
                out.stderr = f"[{note}] " + out.message + "\n"
        return out
    finally:
        for p in (ctx.storage, tmp):
            try:
                p.chmod(0o700)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def main(quick: bool = False) -> None:
    t0 = time.perf_counter()
    cases = [c for c in CASES if not (quick and c.slow)]
    passed = 0
    for case in cases:
        out = run_case(case)
        passed += out.ok
        print(out.line(), flush=True)
    print(f"bad_inputs_passed: {passed}/{len(cases)}")
    print(f"bad_inputs_seconds: {time.perf_counter() - t0:.1f}")
    if quick:
        print("bad_inputs_skipped: nan_loss (--quick; it runs a study)")


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
