"""Generic class folders: ``root/<class>/<images>``, or ``root/{train,val,test}/<class>/<images>``."""

from __future__ import annotations

from study.data.base import SPLITS, DataError, Record, image_files, require_dir
from study.data.sources import FileDataset


class FolderDataset(FileDataset):
    """Images in one folder per class. When ``root`` holds ``train``/``val``/``test`` folders, those are
    kept as the official split. Options: ``root`` (required)."""

    name = "folder"

    def records(self) -> list[Record]:
        root = require_dir(self.root, self.name, "a folder with one sub-folder of images per class")
        split_dirs = [root / s for s in SPLITS if (root / s).is_dir()]
        if split_dirs:
            return [r for d in split_dirs for r in class_folder_records(d, split=d.name)]
        return class_folder_records(root)


def class_folder_records(folder, split: str | None = None, patient_of=None) -> list[Record]:
    """One Record per image in ``folder/<class>/``; ``patient_of(path)`` may give a patient id."""
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(f"{folder}: no class folders found (expected {folder}/<class>/<image files>)")
    out = []
    for c in classes:
        for f in image_files(c):
            out.append(Record(path=f, label=c.name, split=split, patient_id=patient_of(f) if patient_of else None))
    if not out:
        raise DataError(f"{folder}: class folders contain no image files")
    return out
