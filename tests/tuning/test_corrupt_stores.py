"""A study whose MLflow or Optuna store is corrupt: `status`, `report` and `ui` exit 2 naming the file and
the fix, in seconds, instead of an SQLAlchemy traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from study.cli import main
from study.tuning.preflight import DatasetFacts
from study.tuning.spec import load_spec
from study.tuning.studydir import cache_locations, create_study_dir, new_state, study_location

SMOKE = Path(__file__).resolve().parents[2] / "search_spaces" / "smoke.yaml"


@pytest.fixture
def study_dir(tmp_path) -> Path:
    spec = load_spec(SMOKE)
    location = study_location(str(tmp_path), "--storage", "s1")
    facts = {"synthetic": DatasetFacts(images=240, classes=3, resolution=16, channels=3)}
    state = new_state(location, str(SMOKE), cache_locations(spec, str(tmp_path)), facts, None, None)
    return create_study_dir(location, spec, state).dir


# only status reads optuna.db
@pytest.mark.parametrize(
    ("verb", "store"), [("status", "mlflow.db"), ("report", "mlflow.db"), ("ui", "mlflow.db"), ("status", "optuna.db")]
)
def test_a_corrupt_store_is_bad_input(study_dir, store, verb, capsys):
    (study_dir / store).write_bytes(b"SQLite format 3\x00" + b"\x07" * 600)  # a truncated, garbled copy
    if store == "optuna.db":
        (study_dir / "mlflow.db").unlink(missing_ok=True)
    assert main([verb, str(study_dir)]) == 2
    err = capsys.readouterr().err
    assert store in err and "not readable" in err and "restore it from a copy" in err
