"""Each dataset's declared options: checked at the door by name, type and range; cost figures for the plan."""

from __future__ import annotations

import pytest

from study.data import DATASETS, DataError, get_dataset
from study.data.pipeline import AugmentConfig


def test_wrong_type_names_option_and_type():
    with pytest.raises(DataError, match=r"synthetic: bad option num_samples: 'many' .*must be an integer, > 0"):
        get_dataset("synthetic", num_samples="many")


def test_out_of_range_names_option_and_range():
    with pytest.raises(DataError, match=r"synthetic: bad option num_classes: 1 .*must be an integer, >= 2"):
        get_dataset("synthetic", num_classes=1)
    with pytest.raises(DataError, match=r"synthetic: bad option test_fraction: 1\.0 .*< 1"):
        DATASETS["synthetic"].check_options({"test_fraction": 1.0})
    with pytest.raises(DataError, match=r"fashion_mnist: bad option limit: 0 .*> 0"):
        get_dataset("fashion_mnist", limit=0)


def test_unknown_option_lists_allowed():
    with pytest.raises(
        DataError,
        match=r"synthetic: unknown option 'num_sampels' \(allowed: resolution, channels, "
        r"num_samples",
    ):
        get_dataset("synthetic", num_sampels=10)
    with pytest.raises(DataError, match=r"nct_crc_he: unknown option 'limit' \(allowed: .*skip_corrupt"):
        get_dataset("nct_crc_he", limit=10)


def test_required_options_say_what_to_give():
    with pytest.raises(
        DataError,
        match=r"manifest: the option manifest \(path to a CSV with path,label columns\) "
        "is required",
    ):
        get_dataset("manifest")
    with pytest.raises(DataError, match=r"medmnist: the option path \(a MedMNIST .npz file.*\) is required"):
        DATASETS["medmnist"].check_options({"label_index": 0})


def test_options_are_validated_and_kept(tmp_path):
    ds = get_dataset("synthetic", num_samples="50", noise=0, resolution=16)
    assert ds.options.num_samples == 50 and ds.options.noise == 0.0 and isinstance(ds.options.noise, float)
    assert ds.resolution == 16 and ds.channels == 3
    folder = get_dataset("folder", root=tmp_path, skip_corrupt=True)
    assert folder.options.root == str(tmp_path) and folder.root == tmp_path and folder.skip_corrupt
    assert get_dataset("covid_qu_ex").channels == 1  # the dataset's own default
    mura = get_dataset("mura", body_parts=["wrist", "Elbow"])
    assert mura.options.body_parts == ["WRIST", "ELBOW"]
    with pytest.raises(DataError, match="unknown body part 'KNEE'"):
        get_dataset("mura", body_parts=["knee"])


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_dataset_declares_buildable_options(name):
    cls = DATASETS[name]
    fields = cls.Options.model_fields
    assert {"resolution", "channels"} <= set(fields)
    assert all(f.description for f in fields.values()), "every option says what it is"
    required = [n for n, f in fields.items() if f.is_required()]
    assert required == {"manifest": ["manifest"], "medmnist": ["path"]}.get(name, [])
    opts = cls.Options(**{n: "x" for n in required})  # defaults and their types agree
    assert opts.resolution is None and opts.channels is None
    assert cls.check_options({n: "x" for n in required}) == opts
    if required:
        with pytest.raises(DataError, match=f"{name}: the option {required[0]} .* is required"):
            cls.check_options({})


def test_subclass_options_extend_their_base():
    for name in ("nct_crc_he", "covid_qu_ex", "fetal_planes", "mura", "dermnet", "folder", "manifest"):
        assert {"root", "skip_corrupt"} <= set(DATASETS[name].Options.model_fields)
    assert "skip_corrupt" not in DATASETS["synthetic"].Options.model_fields


def test_estimated_images():
    assert DATASETS["synthetic"].estimated_images({}) == 600
    assert DATASETS["synthetic"].estimated_images({"num_samples": 50}) == 50
    assert DATASETS["fashion_mnist"].estimated_images({}) == 70000
    assert DATASETS["fashion_mnist"].estimated_images({"limit": 1000}) == 11000
    assert DATASETS["fashion_mnist"].estimated_images({"limit": 1000, "test_limit": 500}) == 1500
    assert DATASETS["nct_crc_he"].estimated_images({"root": "/data"}) == 107180
    assert DATASETS["manifest"].estimated_images({}) == 10000


def test_default_augment_is_todays_recipe():
    for cls in DATASETS.values():
        assert cls.default_augment == AugmentConfig(scale=(0.7, 1.0), flip=True)


def test_docs_list_every_option():
    from pathlib import Path

    text = (Path(__file__).parents[2] / "docs" / "datasets.md").read_text()
    for name, cls in DATASETS.items():
        assert f"`{name}`" in text
        for option in cls.Options.model_fields:
            assert f"`{option}`" in text, f"docs/datasets.md does not mention {name}'s option {option}"
