"""Decode-once cache: datasets become memory-mapped uint8 arrays keyed by what determines their content.

Layout: ``<cache>/datasets/<key>/{images.npy, arrays.npz, meta.json}``. The key hashes the dataset name,
the decoding options (resolution, channels, skip policy) and a fingerprint of the source files (relative
path, size and modification time of each), so editing, adding or removing a source file gives a new
entry. An entry is written into a temporary folder and renamed into place, under a file lock, so
concurrent trials never see half an entry and never decode the same data twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from filelock import FileLock
from PIL import Image, UnidentifiedImageError

from study.data.base import Arrays, DataError, ImageData, Record

CACHE_VERSION = 1


def hash_key(payload: dict) -> str:
    """A stable hex key of a JSON-serialisable payload."""
    blob = json.dumps(payload, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def file_fingerprint(paths: Sequence[Path], root: Path | None = None) -> str:
    """Hash of (relative path, size, mtime) for each file: cheap, and changes when any file changes."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        rel = str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_or_build(cache_dir: str | Path | None, payload: dict, build: Callable[[Path | None], ImageData]) -> ImageData:
    """The cached dataset for ``payload``, building it with ``build(tmp_dir)`` on a miss.

    ``build`` receives a folder to write ``images.npy`` into (or None without a cache) and returns the
    ImageData; its images may be a memmap of that file.
    """
    payload = {"cache_version": CACHE_VERSION, **payload}
    key = hash_key(payload)
    if cache_dir is None:
        data = build(None)
        data.cache_key = key
        return data
    root = Path(cache_dir).expanduser() / "datasets"
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with FileLock(str(root / f"{key}.lock")):
        if not (entry / "meta.json").exists():
            tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
            try:
                data = build(tmp)
                _write_entry(tmp, data, payload)
                del data
                if entry.exists():  # a stale, incomplete entry from a crash
                    shutil.rmtree(entry)
                os.replace(tmp, entry)
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)
    return _read_entry(entry, key)


def _write_entry(folder: Path, data: ImageData, payload: dict) -> None:
    images_path = folder / "images.npy"
    if not images_path.exists():
        np.save(images_path, np.ascontiguousarray(data.images))
    elif isinstance(data.images, np.memmap):
        data.images.flush()
    arrays = {"labels": data.labels.astype(np.int64)}
    if data.patient_ids is not None:
        arrays["patient_ids"] = data.patient_ids.astype(str)
    if data.official_split is not None:
        arrays["official_split"] = data.official_split.astype(str)
    if data.study_ids is not None:
        arrays["study_ids"] = data.study_ids.astype(str)
    if data.annotations is not None:
        arrays["annotations"] = data.annotations.astype(np.int64)
    np.savez(folder / "arrays.npz", **arrays)
    meta = {
        "name": data.name,
        "class_names": list(data.class_names),
        "skipped": int(data.skipped),
        "noise_groups": data.noise_groups,
        **({"annotators": list(data.annotators)} if data.annotators is not None else {}),
        "payload": payload,
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))


def _read_entry(entry: Path, key: str) -> ImageData:
    meta = json.loads((entry / "meta.json").read_text())
    with np.load(entry / "arrays.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return ImageData(
        name=meta["name"],
        images=np.load(entry / "images.npy", mmap_mode="r"),
        labels=arrays["labels"],
        class_names=meta["class_names"],
        patient_ids=arrays.get("patient_ids"),
        official_split=arrays.get("official_split"),
        skipped=meta["skipped"],
        cache_key=key,
        noise_groups=meta["noise_groups"],
        study_ids=arrays.get("study_ids"),
        annotations=arrays.get("annotations"),
        annotators=meta.get("annotators"),
    )


# --------------------------------------------------------------------------------------------- decoding


def decode_image(path: Path, resolution: int | None, channels: int) -> np.ndarray:
    """One image file as H x W x C uint8, resized to ``resolution`` x ``resolution``; DataError names the file."""
    try:
        with Image.open(path) as im:
            im.load()
            im = _to_mode(im, channels)
            if resolution is not None and im.size != (resolution, resolution):
                im = im.resize((resolution, resolution), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise DataError(f"{path}: cannot decode image ({type(e).__name__}: {e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return arr


def _to_mode(im: Image.Image, channels: int) -> Image.Image:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        im = Image.fromarray(a.astype(np.uint8), mode="L")
    return im.convert("L" if channels == 1 else "RGB")


def decode_records(
    name: str,
    records: Sequence[Record],
    class_names: list[str],
    resolution: int | None,
    channels: int,
    skip_corrupt: bool,
    out_dir: Path | None,
    noise_groups: list[list[int]] | None = None,
    annotators: Sequence[str] = (),
) -> ImageData:
    """Decode every record into one N x R x R x C array (memory-mapped in ``out_dir`` when given); with
    ``annotators``, each record's ``annotations`` (class names, "" where not labelled) become the N x A
    ``ImageData.annotations`` (class indices, -1).

    A file that cannot be decoded raises DataError naming it, or is skipped and counted when
    ``skip_corrupt``. Without ``resolution`` all images must share one size.
    """
    if not records:
        raise DataError(f"{name}: no images found")
    index = {c: i for i, c in enumerate(class_names)}
    first_ok = None
    for rec in records:  # the output size comes from the first decodable image
        try:
            first_ok = decode_image(rec.path, resolution, channels)
            break
        except DataError:
            if not skip_corrupt:
                raise DataError(
                    f"{rec.path}: cannot decode image; remove or replace the file, or set skip_corrupt: true "
                    "in the dataset options to skip unreadable images"
                ) from None
    if first_ok is None:
        raise DataError(f"{name}: no image could be decoded")
    h, w, c = first_ok.shape
    n = len(records)
    if out_dir is not None:
        images = np.lib.format.open_memmap(out_dir / "images.npy", mode="w+", dtype=np.uint8, shape=(n, h, w, c))
    else:
        images = np.empty((n, h, w, c), dtype=np.uint8)

    def work(i: int) -> bool:
        rec = records[i]
        try:
            arr = decode_image(rec.path, resolution, channels)
        except DataError as e:
            if skip_corrupt:
                return False
            raise DataError(
                f"{e}; remove or replace the file, or set skip_corrupt: true in the dataset options to skip "
                "unreadable images"
            ) from None
        if arr.shape != (h, w, c):
            raise DataError(
                f"{rec.path}: image is {arr.shape[1]}x{arr.shape[0]}, others are {w}x{h}; set a resolution "
                "in the dataset options to resize all images"
            )
        images[i] = arr
        return True

    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        ok = np.fromiter(pool.map(work, range(n)), dtype=bool, count=n)
    keep = np.flatnonzero(ok)
    if keep.size == 0:
        raise DataError(f"{name}: no image could be decoded")
    if keep.size < n:
        kept = np.ascontiguousarray(images[keep])
        if out_dir is not None:
            del images
            np.save(out_dir / "images.npy", kept)
            kept = np.load(out_dir / "images.npy", mmap_mode="r")
        images = kept
    recs = [records[i] for i in keep]
    labels = np.array([index[r.label] for r in recs], dtype=np.int64)
    patients = np.array([r.patient_id for r in recs], dtype=str) if any(r.patient_id for r in recs) else None
    splits = np.array([r.split or "" for r in recs], dtype=str) if any(r.split for r in recs) else None
    studies = np.array([r.study_id or "" for r in recs], dtype=str) if any(r.study_id for r in recs) else None
    given = None
    if annotators:
        given = np.array([[index[a] if a else -1 for a in r.annotations] for r in recs], dtype=np.int64)
        given = given.reshape(len(recs), len(annotators))
    return ImageData(
        name=name,
        images=images,
        labels=labels,
        class_names=list(class_names),
        patient_ids=patients,
        official_split=splits,
        skipped=int(n - keep.size),
        noise_groups=noise_groups,
        study_ids=studies,
        annotations=given,
        annotators=list(annotators) if annotators else None,
    )


def resize_arrays(
    arr: Arrays,
    name: str,
    resolution: int | None,
    channels: int,
    noise_groups: list[list[int]] | None,
    out_dir: Path | None,
) -> ImageData:
    """Arrays (N x H x W or N x H x W x C uint8) to ImageData at ``resolution`` and ``channels``."""
    images = arr.images
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise DataError(f"{name}: images must be N x H x W (x C), got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{name}: images must be uint8, got {images.dtype}")
    n, h, w, c = images.shape
    target = resolution or h
    if c != channels or (h, w) != (target, target):
        out = np.empty((n, target, target, channels), dtype=np.uint8)
        mode = "L" if c == 1 else "RGB"
        for i in range(n):
            src = images[i, :, :, 0] if c == 1 else images[i]
            im = _to_mode(Image.fromarray(src, mode=mode), channels)
            if im.size != (target, target):
                im = im.resize((target, target), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
            out[i] = a[:, :, None] if a.ndim == 2 else a
        images = out
    if out_dir is not None:
        np.save(out_dir / "images.npy", np.ascontiguousarray(images))
        images = np.load(out_dir / "images.npy", mmap_mode="r")
    return ImageData(
        name=name,
        images=images,
        labels=np.asarray(arr.labels, dtype=np.int64).reshape(-1),
        class_names=list(arr.class_names),
        patient_ids=None if arr.patient_ids is None else np.asarray(arr.patient_ids).astype(str),
        official_split=None if arr.official_split is None else np.asarray(arr.official_split).astype(str),
        noise_groups=noise_groups,
        annotations=None if arr.annotations is None else np.asarray(arr.annotations, dtype=np.int64),
        annotators=None if arr.annotators is None else list(arr.annotators),
    )
