"""Ctrl-C during a stage: the stage stays unfinished and the CLI exits 130 with the resume command.

Ray Tune's own SIGINT handler ended ``fit()`` as if the stage had finished (its interrupted trials read
TERMINATED), so the driver marked the stage done and went on; the driver now disables that handler and
takes the KeyboardInterrupt itself."""

from __future__ import annotations

import os

import pytest

from study.tuning import driver
from study.tuning.errors import StudyInterrupted
from study.tuning.preflight import DatasetFacts
from study.tuning.spec import load_spec
from study.tuning.studydir import cache_locations, create_study_dir, new_state, study_location
from tests.conftest import SMOKE


def test_ctrl_c_leaves_the_stage_unfinished(tmp_path, monkeypatch, capsys):
    spec = load_spec(SMOKE)
    location = study_location(str(tmp_path), "--storage", "s1")
    facts = {"synthetic": DatasetFacts(images=240, classes=3, resolution=16, channels=3)}
    paths = create_study_dir(
        location, spec, new_state(location, str(SMOKE), cache_locations(spec, str(tmp_path)), facts, None, None)
    )

    def interrupted(stage, spec, plan, paths, has_gpu, quiet):
        paths.set_stage(stage, "running")
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "_start", lambda *a: False)
    monkeypatch.setattr(driver, "_run_stage", interrupted)
    with pytest.raises(StudyInterrupted, match=f"study resume {location}"):
        driver.run_stages(spec, paths, None, quiet=True)
    assert paths.state.stages == {"pretrain": "running", "lnl": "pending", "final": "pending"}
    assert paths.state.finished_at is None

    from study import cli

    monkeypatch.setattr(cli, "check_resources", lambda *a: None)
    monkeypatch.setattr(
        "study.tuning.launch.run_stages", lambda *a: (_ for _ in ()).throw(StudyInterrupted("lnl", "D"))
    )
    assert cli.main(["resume", location, "--quiet"]) == 130
    assert "interrupted during stage lnl" in capsys.readouterr().err


def test_tune_leaves_sigint_to_the_driver(monkeypatch):
    monkeypatch.delenv("TUNE_DISABLE_SIGINT_HANDLER", raising=False)
    monkeypatch.setattr(driver.ray, "is_initialized", lambda: True)  # set the environment, start nothing
    driver.init_ray(None, quiet=True)
    assert os.environ.get("TUNE_DISABLE_SIGINT_HANDLER") == "1"
