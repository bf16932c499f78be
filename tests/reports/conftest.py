"""Fixtures: a fabricated study (tests/reports/fabricate.py) built once per session and copied per use."""

from __future__ import annotations

import os
import shutil

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")


@pytest.fixture(scope="session")
def whole_study_template(tmp_path_factory):
    from tests.reports.fabricate import build_fabricated_study

    return build_fabricated_study(tmp_path_factory.mktemp("template") / "fabricated")


@pytest.fixture(scope="session")
def partial_study(whole_study_template, tmp_path_factory):
    from tests.reports.fabricate import make_partial

    d = tmp_path_factory.mktemp("partial") / "fabricated"
    shutil.copytree(whole_study_template, d)
    return make_partial(d)


@pytest.fixture(scope="session")
def partial_report(partial_study):
    from study.reports.report import make_report

    return make_report(partial_study)


@pytest.fixture
def whole_study(whole_study_template, tmp_path):
    d = tmp_path / "fabricated"
    shutil.copytree(whole_study_template, d)
    return d
