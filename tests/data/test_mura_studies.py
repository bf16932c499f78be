"""MURA scored per study, and a trial's inputs cut from larger stored images: study ids from the published
layout survive the cache; a trial's final metrics add ``test_study_*`` (each study's probability the mean of its
images') and the full ``shifted_test_*`` set; stored images smaller than the input are refused at the door."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from study.data import get_dataset
from study.experiment import build_trial
from study.metrics import study_metrics
from study.train import predict_probs
from study.tuning.plan import Point
from study.tuning.preflight import preflight
from study.tuning.spec import SpecError, parse_spec
from tests.data.test_loaders import write_image


def _mura(root, patients: int = 3) -> None:
    """MURA's published layout: per part, ``patients`` patients with a positive and a negative study of two
    images each (pixel values differ by study label, so a model can tell them apart)."""
    base = root / "MURA-v1.1"
    for part in ("train", "valid"):
        studies, paths = [], []
        for p in range(patients):
            for s, lab in ((1, 1), (2, 0)):
                study = f"MURA-v1.1/{part}/XR_WRIST/patient{p:05d}/study{s}_{'positive' if lab else 'negative'}/"
                studies.append(f"{study},{lab}")
                for j in range(2):
                    rel = f"{study}image{j + 1}.png"
                    write_image(root / rel, 60 + 120 * lab + 10 * j + p, mode="L", size=24)
                    paths.append(rel)
        (base / f"{part}_labeled_studies.csv").write_text("\n".join(studies) + "\n")
        (base / f"{part}_image_paths.csv").write_text("\n".join(paths) + "\n")


def test_mura_keeps_each_images_study_through_the_cache(tmp_path):
    _mura(tmp_path)
    data = get_dataset("mura", root=tmp_path, resolution=16).load(tmp_path / "cache")
    again = get_dataset("mura", root=tmp_path, resolution=16).load(tmp_path / "cache")  # read back from the cache
    for d in (data, again):
        assert d.study_ids is not None and len(d.study_ids) == 24
        assert len(set(d.study_ids)) == 12  # 2 parts x 3 patients x 2 studies, 2 images each
        assert "MURA-v1.1/valid/XR_WRIST/patient00001/study2_negative" in set(d.study_ids)
        for s in set(d.study_ids):  # a study's images share its label and patient
            rows = d.study_ids == s
            assert len(set(d.labels[rows])) == 1 and len(set(d.patient_ids[rows])) == 1
            assert s.split("/")[3] == d.patient_ids[rows][0]
    assert get_dataset("synthetic", num_samples=20).load(None).study_ids is None


def _spec(root, stored: int, shifted: bool = True):
    entry = {"name": "mura", "options": {"root": str(root), "resolution": stored}}
    if shifted:
        entry["shifted_test"] = {"name": "mura", "options": {"root": str(root)}}
    return parse_spec(
        {
            "name": "mura-studies",
            "datasets": [entry],
            "noise": {"kinds": ["symmetric"], "rates": [0.0]},
            "ssl": [{"method": "random"}],
            "lnl": [{"algorithm": "ce", "epochs": 1, "batch_size": 4, "fixed": {"lr": 0.01}}],
            "seeds": [0],
            "model": {"backbone": "small_cnn", "resolution": 16},
        }
    )


def test_trial_crops_to_the_input_and_scores_studies(tmp_path):
    _mura(tmp_path, patients=10)
    spec = _spec(tmp_path, stored=20)
    point = Point("mura", "symmetric", 0.0, "random", "ce", 0)
    trial = build_trial(spec, point, dict(spec.lnl[0].fixed), torch.device("cpu"), tmp_path / "c", tmp_path / "c")
    assert trial.data.resolution == 20
    assert next(iter(trial.train))[0].shape[-2:] == (16, 16)  # random 16 px crops of the 20 px images
    assert next(iter(trial.val))[0].shape[-2:] == (16, 16)  # centre crops
    result = trial.fit()
    final = trial.final_metrics(result, tmp_path / "c")
    test = trial.splits.test
    assert np.all(trial.data.official_split[test] == "test")
    probs, y = predict_probs(trial.algo, trial._loader(trial.data.images[test], trial.clean[test]))
    expected = study_metrics(trial.data.study_ids[test], y, probs, prefix="test_study_")
    for key in ("test_study_f1", "test_study_acc", "test_study_auroc"):
        assert final[key] == pytest.approx(expected[key], nan_ok=True)
    for name in ("f1", "acc", "balanced_acc", "auroc"):
        assert f"test_{name}" in final and f"shifted_test_{name}" in final
    assert not any(isinstance(v, list) for k, v in final.items() if k.startswith("shifted_test_"))


def test_stored_images_smaller_than_the_input_are_refused_at_the_door(tmp_path):
    _mura(tmp_path)
    with pytest.raises(SpecError, match=r"datasets\[0\]\.options\.resolution: .*smaller than the network input"):
        preflight(_spec(tmp_path, stored=12, shifted=False), "spec.yaml", str(tmp_path / "c"))
    spec = _spec(tmp_path, stored=16)
    shifted_small = spec.model_copy(
        update={
            "datasets": [
                spec.datasets[0].model_copy(
                    update={
                        "shifted_test": spec.datasets[0].shifted_test.model_copy(
                            update={"options": {"root": str(tmp_path), "resolution": 8}}
                        )
                    }
                )
            ]
        }
    )
    with pytest.raises(SpecError, match=r"datasets\[0\]\.shifted_test\.options\.resolution"):
        preflight(shifted_small, "spec.yaml", str(tmp_path / "c"))
    assert preflight(spec, "spec.yaml", str(tmp_path / "c"))["mura"].resolution == 16  # equal sizes: no crop
