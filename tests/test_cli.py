"""The CLI's validate/plan verbs and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from study.cli import main

SPECS = Path(__file__).resolve().parents[1] / "search_spaces"


def test_validate_ok(capsys):
    assert main(["validate", str(SPECS / "smoke.yaml")]) == 0
    assert "ok: study 'smoke'" in capsys.readouterr().out


def test_validate_bad_exit_2(tmp_path, capsys):
    p = tmp_path / "bad.yaml"
    p.write_text((SPECS / "smoke.yaml").read_text().replace("algorithm: ce", "algorithm: cee"))
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err
    assert f"{p}: lnl[0].algorithm: unknown LNL algorithm 'cee' (allowed: " in err
    assert list(tmp_path.iterdir()) == [p]


def test_plan_json(capsys):
    assert main(["plan", "--json", str(SPECS / "khanal2024.yaml")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["pretraining_jobs"] == 120 and out["cells"] == 500


def test_plan_text(capsys):
    assert main(["plan", str(SPECS / "demo.yaml")]) == 0
    assert "pretraining jobs: 1" in capsys.readouterr().out


def test_stub_verbs_exit_2(capsys):
    assert main(["report", "x"]) == 2


def test_a_corrupt_state_json_is_exit_2_naming_the_file(tmp_path, capsys):
    study_dir = tmp_path / "s1"
    study_dir.mkdir()
    (study_dir / "spec.yaml").write_text((SPECS / "smoke.yaml").read_text())
    (study_dir / "state.json").write_text('{"name": "s1", "stages": {"pretrain": "do')  # cut off mid-write
    for verb in ("status", "resume"):
        assert main([verb, str(study_dir)]) == 2
        err = capsys.readouterr().err
        assert f"study {verb}: {study_dir / 'state.json'}: not a study's state (" in err, err
    assert sorted(p.name for p in study_dir.iterdir()) == ["spec.yaml", "state.json"]
