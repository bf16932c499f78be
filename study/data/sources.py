"""The two dataset bases: one over image files (a subclass lists ``Record`` s), one over arrays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from study.data.base import Arrays, Dataset, ImageData, OptionalPathText, Record
from study.data.cache import decode_records, file_fingerprint, load_or_build, resize_arrays


class FileDataset(Dataset):
    """A dataset of image files. Subclasses implement ``records()`` (and may override ``class_names``)."""

    class Options(Dataset.Options):
        root: OptionalPathText = Field(
            None, description="the folder of the unpacked archive (layouts: docs/datasets.md)"
        )
        skip_corrupt: bool = Field(
            False, description="skip unreadable files and count them instead of stopping with the file's name"
        )

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.root = Path(self.options.root).expanduser() if self.options.root is not None else None
        self.skip_corrupt = self.options.skip_corrupt

    def records(self) -> list[Record]:
        raise NotImplementedError

    def class_names(self, records: list[Record]) -> list[str]:
        """Class names in a fixed order: sorted unless the subclass knows the official order."""
        return sorted({r.label for r in records})

    def load(self, cache_dir: str | Path | None = None) -> ImageData:
        recs = self.records()
        classes = self.class_names(recs)
        groups = self._group_indices(classes)
        payload = {
            "dataset": self.name,
            "resolution": self.resolution,
            "channels": self.channels,
            "skip_corrupt": self.skip_corrupt,
            "files": file_fingerprint([r.path for r in recs], self.root),
            "records": _records_digest(recs, self.root),
            "classes": classes,
        }
        return load_or_build(
            cache_dir,
            payload,
            lambda out: decode_records(
                self.name,
                recs,
                classes,
                self.resolution,
                self.channels,
                self.skip_corrupt,
                out,
                groups,
                self.recorded_annotators(self.options.model_dump()),
            ),
        )


class ArrayDataset(Dataset):
    """A dataset that arrives as arrays (IDX, npz, generated). Subclasses implement ``arrays()`` and
    ``source_key()`` (what identifies the source content)."""

    def arrays(self) -> Arrays:
        raise NotImplementedError

    def source_key(self) -> dict:
        raise NotImplementedError

    def load(self, cache_dir: str | Path | None = None) -> ImageData:
        payload = {
            "dataset": self.name,
            "resolution": self.resolution,
            "channels": self.channels,
            "source": self.source_key(),
        }

        def build(out: Path | None) -> ImageData:
            arr = self.arrays()
            return resize_arrays(
                arr, self.name, self.resolution, self.channels, self._group_indices(arr.class_names), out
            )

        return load_or_build(cache_dir, payload, build)


def _records_digest(records: list[Record], root: Path | None) -> str:
    import hashlib

    h = hashlib.sha256()
    for r in records:
        p = str(r.path.relative_to(root)) if root is not None and r.path.is_relative_to(root) else str(r.path)
        study = f"\0{r.study_id}" if r.study_id is not None else ""  # keys of datasets without studies unchanged
        given = "".join(f"\0{a}" for a in r.annotations)  # likewise without annotators
        h.update(f"{p}\0{r.label}\0{r.patient_id}\0{r.split}{study}{given}\n".encode())
    return h.hexdigest()[:24]
