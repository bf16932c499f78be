"""``resources.*.memory_gb``: Ray schedules trials by it, and a spec whose dataset inputs (or whose nodes)
cannot hold it is refused at the door with exit 2, naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.tuning.driver import _resources
from study.tuning.errors import StudyInputError
from study.tuning.plan import check_resources, input_bytes, make_plan
from study.tuning.spec import parse_spec

SPECS = Path(__file__).resolve().parents[2] / "search_spaces"


def _spec_dict(memory_gb: float | None, stage: str = "trial") -> dict:
    d = yaml.safe_load((SPECS / "smoke.yaml").read_text())
    d["datasets"] = [{"name": "synthetic", "options": {"num_samples": 5000, "image_size": 64, "num_classes": 4}}]
    d["model"]["resolution"] = 64
    d["resources"][stage]["memory_gb"] = memory_gb
    return d


def test_the_plan_refuses_a_trial_memory_below_its_inputs(tmp_path, capsys):
    spec = parse_spec(_spec_dict(None))
    need = input_bytes(spec, spec.datasets[0].key)
    assert need == pytest.approx(5000 * (1 - spec.datasets[0].splits.test_fraction) * 64 * 64 * 3)
    make_plan(parse_spec(_spec_dict(need / 1e9 * 1.1)))  # holds it: no error
    for stage in ("trial", "pretrain"):
        path = tmp_path / f"{stage}.yaml"
        path.write_text(yaml.safe_dump(_spec_dict(need / 1e9 / 2, stage)))
        assert main(["plan", str(path)]) == 2
        err = capsys.readouterr().err
        assert f"resources.{stage}.memory_gb" in err and "'synthetic'" in err and "raise memory_gb" in err


def test_memory_goes_to_ray_and_a_node_too_small_is_refused():
    spec = parse_spec(_spec_dict(2.0))
    assert _resources(spec.resources.trial, has_gpu=False) == {"cpu": 1, "gpu": 0, "memory": 2e9}
    assert "memory" not in _resources(parse_spec(_spec_dict(None)).resources.trial, has_gpu=False)
    check_resources(spec, 2, "this machine", 4e9)
    with pytest.raises(StudyInputError, match=r"resources.trial.memory_gb 2: this machine has 1 GB"):
        check_resources(spec, 2, "this machine", 1e9)
    check_resources(spec, 2, "this machine", None)  # memory unknown: not checked


def test_plan_prints_the_budget():
    from study.tuning.plan import format_plan

    spec = parse_spec(_spec_dict(3.0))
    assert "(each within resources.trial.memory_gb: 3 GB)" in format_plan(spec, make_plan(spec), "x.yaml")
