"""The decode-once cache: hits skip decoding, any source change gives a new entry, bad files are named."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

import study.data.cache as cache_mod
from study.data import DataError, get_dataset
from tests.data.test_loaders import write_image


def _folder(root):
    for i, c in enumerate(["a", "b"]):
        for j in range(3):
            write_image(root / c / f"{j}.png", 50 * i + j)


def test_second_load_is_memory_mapped_and_does_not_decode(tmp_path, monkeypatch):
    _folder(tmp_path / "d")
    first = get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c")
    assert isinstance(first.images, np.memmap)

    def boom(*a, **k):
        raise AssertionError("decoded again")

    monkeypatch.setattr(cache_mod, "decode_image", boom)
    second = get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c")
    assert second.cache_key == first.cache_key
    np.testing.assert_array_equal(second.images, first.images)
    assert len(list((tmp_path / "c" / "datasets").iterdir())) == 2  # the entry and its lock


def test_key_changes_with_resolution_channels_and_files(tmp_path):
    _folder(tmp_path / "d")
    keys = {get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c").cache_key}
    keys.add(get_dataset("folder", root=tmp_path / "d", resolution=16).load(tmp_path / "c").cache_key)
    keys.add(get_dataset("folder", root=tmp_path / "d", channels=1).load(tmp_path / "c").cache_key)
    f = tmp_path / "d" / "a" / "0.png"
    write_image(f, 200)
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    changed = get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c")
    keys.add(changed.cache_key)
    (tmp_path / "d" / "b" / "2.png").unlink()
    keys.add(get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c").cache_key)
    assert len(keys) == 5
    assert changed.images[0].mean() > 150  # the edited file was decoded anew


def test_corrupt_image_is_named_or_skipped_with_count(tmp_path):
    _folder(tmp_path / "d")
    bad = tmp_path / "d" / "b" / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(DataError, match=r"broken.png: cannot decode image.*skip_corrupt: true"):
        get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c")
    assert not any(p.name.startswith(".") for p in (tmp_path / "c" / "datasets").iterdir())  # no half entry
    data = get_dataset("folder", root=tmp_path / "d", skip_corrupt=True).load(tmp_path / "c")
    assert data.skipped == 1 and len(data) == 6
    again = get_dataset("folder", root=tmp_path / "d", skip_corrupt=True).load(tmp_path / "c")
    assert again.skipped == 1


def test_concurrent_loads_decode_once(tmp_path, monkeypatch):
    _folder(tmp_path / "d")
    calls = []
    real = cache_mod.decode_records

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    monkeypatch.setattr("study.data.sources.decode_records", counting)
    results = []
    threads = [
        threading.Thread(target=lambda: results.append(get_dataset("folder", root=tmp_path / "d").load(tmp_path / "c")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len({r.cache_key for r in results}) == 1


def test_array_dataset_cache(tmp_path):
    a = get_dataset("synthetic", num_samples=50, image_size=16).load(tmp_path)
    b = get_dataset("synthetic", num_samples=50, image_size=16).load(tmp_path)
    c = get_dataset("synthetic", num_samples=50, image_size=16, seed=1).load(tmp_path)
    assert a.cache_key == b.cache_key != c.cache_key
    assert isinstance(b.images, np.memmap)
