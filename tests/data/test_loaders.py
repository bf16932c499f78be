"""Each loader on tiny fixtures written in its dataset's real distribution layout."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from study.data import DATASETS, DataError, get_dataset
from study.registry import UnknownNameError


def write_image(path: Path, value: int, size: int = 20, mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size, size, 3) if mode == "RGB" else (size, size)
    arr = np.clip(rng.normal(value, 10, size=shape), 0, 255).astype(np.uint8)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def test_registry_names_match_design():
    # the contract's names (a superset: registering a new dataset needs no edit here)
    assert set(DATASETS) >= {
        "nct_crc_he",
        "covid_qu_ex",
        "fetal_planes",
        "mura",
        "dermnet",
        "folder",
        "manifest",
        "medmnist",
        "fashion_mnist",
        "synthetic",
    }


def test_unknown_dataset_lists_choices():
    with pytest.raises(UnknownNameError, match="allowed: covid_qu_ex, dermnet"):
        get_dataset("cifar10")


def test_nct_crc_he_layout(tmp_path):
    for split_dir in ("NCT-CRC-HE-100K", "CRC-VAL-HE-7K"):
        for i, c in enumerate(["ADI", "TUM", "STR", "MUS"]):
            for j in range(2):
                write_image(tmp_path / split_dir / c / f"{c}-{split_dir[:3]}{j}.tif", 30 * i + j)
    data = get_dataset("nct_crc_he", root=tmp_path, resolution=16).load(tmp_path / "cache")
    assert data.images.shape == (16, 16, 16, 3)
    assert data.class_names[:3] == ["ADI", "BACK", "DEB"] and data.num_classes == 9
    assert sorted(set(data.official_split)) == ["test", "train"]
    assert np.sum(data.official_split == "test") == 8
    names = data.class_names
    assert [names[i] for i in data.noise_groups[0]] == ["STR", "MUS"]


def test_nct_crc_he_missing_root_names_layout(tmp_path):
    with pytest.raises(DataError, match="NCT-CRC-HE-100K is missing"):
        get_dataset("nct_crc_he", root=tmp_path).load(None)
    with pytest.raises(DataError, match="root is required"):
        get_dataset("nct_crc_he").load(None)


def test_covid_qu_ex_layout(tmp_path):
    base = tmp_path / "Lung Segmentation Data" / "Lung Segmentation Data"
    for s in ("Train", "Val", "Test"):
        for i, c in enumerate(["COVID-19", "Non-COVID", "Normal"]):
            write_image(base / s / c / "images" / f"{c}_{s}.png", 50 * i, mode="L")
            write_image(base / s / c / "lung masks" / f"{c}_{s}.png", 255, mode="L")
    data = get_dataset("covid_qu_ex", root=tmp_path, resolution=12).load(None)
    assert len(data) == 9  # masks are not images of the dataset
    assert data.images.shape[1:] == (12, 12, 1)
    assert sorted(set(data.official_split)) == ["test", "train", "val"]
    assert data.class_names == ["COVID-19", "Non-COVID", "Normal"]


def test_fetal_planes_layout(tmp_path):
    rows = ["Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train "]
    planes = ["Fetal brain", "Fetal abdomen", "Other", "Maternal cervix"]
    for i in range(8):
        name = f"Patient{i // 2:05d}_Plane{i}"
        write_image(tmp_path / "Images" / f"{name}.png", 20 * i, mode="L")
        rows.append(f"{name};{i // 2};{planes[i % 4]};Not A Brain;Op. 1;Voluson E6;{int(i < 6)}")
    (tmp_path / "FETAL_PLANES_DB_data.csv").write_text("\n".join(rows) + "\n")
    data = get_dataset("fetal_planes", root=tmp_path, resolution=16).load(None)
    assert len(data) == 8 and data.num_classes == 6
    assert data.patient_ids.tolist()[:3] == ["0", "0", "1"]
    assert data.official_split.tolist().count("test") == 2
    assert data.class_names[data.labels[0]] == "Fetal brain"


def test_fetal_planes_bad_plane_names_line(tmp_path):
    write_image(tmp_path / "Images" / "a.png", 1, mode="L")
    (tmp_path / "FETAL_PLANES_DB_data.csv").write_text(
        "Image_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train \na;1;Fetal liver;x;y;z;1\n"
    )
    with pytest.raises(DataError, match=r"FETAL_PLANES_DB_data.csv:2: Plane 'Fetal liver'"):
        get_dataset("fetal_planes", root=tmp_path).load(None)


def _mura(tmp_path: Path) -> None:
    base = tmp_path / "MURA-v1.1"
    for part in ("train", "valid"):
        studies, paths = [], []
        for p in range(3):
            for s, lab in ((1, 1), (2, 0)):
                study = f"MURA-v1.1/{part}/XR_WRIST/patient{p:05d}/study{s}_{'positive' if lab else 'negative'}/"
                studies.append(f"{study},{lab}")
                for j in range(2):
                    rel = f"{study}image{j + 1}.png"
                    write_image(tmp_path / rel, 40 * p + j, mode="L")
                    paths.append(rel)
        (base / f"{part}_labeled_studies.csv").write_text("\n".join(studies) + "\n")
        (base / f"{part}_image_paths.csv").write_text("\n".join(paths) + "\n")


def test_mura_layout_study_labels_and_patients(tmp_path):
    _mura(tmp_path)
    data = get_dataset("mura", root=tmp_path, resolution=16).load(None)
    assert len(data) == 24 and data.class_names == ["normal", "abnormal"]
    assert set(data.patient_ids) == {"patient00000", "patient00001", "patient00002"}
    assert np.sum(data.labels == 1) == 12  # every image takes its study's label
    assert np.sum(data.official_split == "test") == 12


def test_mura_body_parts_filter(tmp_path):
    _mura(tmp_path)
    with pytest.raises(DataError, match="no images"):
        get_dataset("mura", root=tmp_path, body_parts=["ELBOW"]).load(None)


def test_dermnet_layout(tmp_path):
    for s in ("train", "test"):
        for i, c in enumerate(["Acne and Rosacea Photos", "Eczema Photos", "Atopic Dermatitis Photos"]):
            write_image(tmp_path / s / c / f"{i}.jpg", 60 * i, size=24)
    data = get_dataset("dermnet", root=tmp_path, resolution=16).load(None)
    assert len(data) == 6 and data.num_classes == 3
    assert data.noise_groups == [[2, 1]] or data.noise_groups == [[1, 2]]


def test_folder_with_and_without_split_dirs(tmp_path):
    for i, c in enumerate(["a", "b"]):
        for j in range(3):
            write_image(tmp_path / "flat" / c / f"{j}.png", 100 * i + j)
            write_image(tmp_path / "split" / ("train" if j else "test") / c / f"{j}.png", 100 * i + j)
    flat = get_dataset("folder", root=tmp_path / "flat").load(None)
    assert flat.images.shape == (6, 20, 20, 3) and flat.official_split is None
    split = get_dataset("folder", root=tmp_path / "split").load(None)
    assert split.official_split.tolist().count("test") == 2


def test_folder_mixed_sizes_need_resolution(tmp_path):
    write_image(tmp_path / "a" / "0.png", 1, size=20)
    write_image(tmp_path / "a" / "1.png", 2, size=30)
    with pytest.raises(DataError, match="set a resolution"):
        get_dataset("folder", root=tmp_path).load(None)
    assert get_dataset("folder", root=tmp_path, resolution=16).load(None).images.shape == (2, 16, 16, 3)


def test_manifest_with_patients_and_splits(tmp_path):
    lines = ["path,label,patient_id,split"]
    for i in range(6):
        write_image(tmp_path / "img" / f"{i}.png", 10 * i)
        lines.append(f"img/{i}.png,{'tumour' if i % 2 else 'normal'},P{i // 2},{'test' if i >= 4 else 'train'}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    data = get_dataset("manifest", manifest=tmp_path / "m.csv", channels=1).load(None)
    assert data.class_names == ["normal", "tumour"]
    assert data.patient_ids.tolist() == ["P0", "P0", "P1", "P1", "P2", "P2"]
    assert data.images.shape == (6, 20, 20, 1)


def test_manifest_wrong_label_column_names_columns(tmp_path):
    write_image(tmp_path / "0.png", 1)
    (tmp_path / "m.csv").write_text("file,diagnosis\n0.png,x\n")
    with pytest.raises(DataError, match=r"no column 'path' \(columns: file, diagnosis\)"):
        get_dataset("manifest", manifest=tmp_path / "m.csv").load(None)
    data = get_dataset("manifest", manifest=tmp_path / "m.csv", path_column="file", label_column="diagnosis").load(None)
    assert len(data) == 1


def test_manifest_missing_image_names_row(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nnope.png,x\n")
    with pytest.raises(DataError, match=r"m.csv:2: image .*nope.png does not exist"):
        get_dataset("manifest", manifest=tmp_path / "m.csv").load(None)


def _medmnist(path: Path, multilabel: bool = False, rgb: bool = False, size: int = 28) -> None:
    rng = np.random.default_rng(0)
    arrays = {}
    for s, n in (("train", 10), ("val", 4), ("test", 6)):
        shape = (n, size, size, 3) if rgb else (n, size, size)
        arrays[f"{s}_images"] = rng.integers(0, 255, size=shape, dtype=np.uint8)
        arrays[f"{s}_labels"] = rng.integers(0, 2, size=(n, 14)) if multilabel else rng.integers(0, 9, size=(n, 1))
    arrays["train_labels"][0] = 8 if not multilabel else arrays["train_labels"][0]
    np.savez(path, **arrays)


def test_medmnist_npz_official_splits(tmp_path):
    _medmnist(tmp_path / "pathmnist_64.npz", rgb=True, size=64)
    data = get_dataset("medmnist", path=tmp_path / "pathmnist_64.npz").load(None)
    assert data.images.shape == (20, 64, 64, 3) and data.num_classes == 9
    assert data.official_split.tolist().count("val") == 4
    gray = get_dataset("medmnist", path=tmp_path / "pathmnist_64.npz", channels=1, resolution=32).load(None)
    assert gray.images.shape == (20, 32, 32, 1)


def test_medmnist_multilabel_needs_label_index(tmp_path):
    _medmnist(tmp_path / "chestmnist.npz", multilabel=True)
    with pytest.raises(DataError, match="set label_index"):
        get_dataset("medmnist", path=tmp_path / "chestmnist.npz").load(None)
    data = get_dataset("medmnist", path=tmp_path / "chestmnist.npz", label_index=3).load(None)
    assert data.num_classes == 2 and data.images.shape == (20, 28, 28, 1)


def _idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_mnist_idx(tmp_path):
    rng = np.random.default_rng(0)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (12, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(12) % 10)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 255, (5, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(5))
    data = get_dataset("fashion_mnist", root=tmp_path).load(tmp_path / "cache")
    assert data.images.shape == (17, 28, 28, 1) and data.num_classes == 10
    assert data.labels[:12].tolist() == (np.arange(12) % 10).tolist()
    assert data.official_split.tolist().count("test") == 5
    limited = get_dataset("fashion_mnist", root=tmp_path, limit=4).load(None)
    assert len(limited) == 9


def test_fashion_mnist_bad_idx_names_file(tmp_path):
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / stem).write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x01\x00")
    with pytest.raises(DataError, match="train-images-idx3-ubyte: not an unsigned-byte IDX"):
        get_dataset("fashion_mnist", root=tmp_path).load(None)
    with pytest.raises(DataError, match="make data"):
        get_dataset("fashion_mnist", root=tmp_path / "none").load(None)


def test_real_fashion_mnist():
    """Debian's dataset-fashion-mnist, which `make test` installs (make data)."""
    data = get_dataset("fashion_mnist", limit=100, test_limit=50).load(None)
    assert data.images.shape == (150, 28, 28, 1) and data.labels.max() <= 9


def test_synthetic_patients_and_speed():
    import time

    t0 = time.perf_counter()
    data = get_dataset(
        "synthetic", num_samples=2000, num_classes=5, image_size=32, views_per_patient=3, test_fraction=0.2
    ).load(None)
    assert time.perf_counter() - t0 < 5.0
    assert data.images.shape == (2000, 32, 32, 3)
    assert np.bincount(data.labels).min() > 300
    # every patient's views share one label; test patients are held out whole
    for pid in np.unique(data.patient_ids)[:50]:
        m = data.patient_ids == pid
        assert len(set(data.labels[m])) == 1 and len(set(data.official_split[m])) == 1
    # views of one patient are closer than two images of its class from different patients
    x = data.images.reshape(len(data), -1).astype(np.float32)
    same, other = [], []
    for pid in np.unique(data.patient_ids)[:40]:
        i, j = np.flatnonzero(data.patient_ids == pid)[:2]
        k = np.flatnonzero((data.labels == data.labels[i]) & (data.patient_ids != pid))[0]
        same.append(np.linalg.norm(x[i] - x[j]))
        other.append(np.linalg.norm(x[i] - x[k]))
    assert np.mean(same) < np.mean(other)


def test_synthetic_is_deterministic_and_class_conditional():
    a = get_dataset("synthetic", num_samples=200, seed=3).load(None)
    b = get_dataset("synthetic", num_samples=200, seed=3).load(None)
    np.testing.assert_array_equal(a.images, b.images)
    means = np.stack([a.images[a.labels == c].mean(0) for c in range(a.num_classes)])
    assert np.abs(means[0] - means[1]).mean() > 5  # classes differ visibly


def test_bad_options_are_data_errors():
    with pytest.raises(DataError, match=r"channels: 2 is not allowed.*must be one of 1, 3 or null"):
        get_dataset("synthetic", channels=2)
    with pytest.raises(DataError, match=r"synthetic: bad options: num_samples \(3\) must be >= num_classes \(5\)"):
        get_dataset("synthetic", num_samples=3, num_classes=5)
    with pytest.raises(DataError, match="resolution: True is a boolean"):
        get_dataset("folder", resolution=True)
