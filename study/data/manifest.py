"""A CSV manifest: one row per image with its path and label, optionally patient id and split.

Covers the six histopathology sets of Dedieu et al. 2024 and any user data. Column names are options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field

from study.data.base import SPLITS, DataError, OptionalPathText, PathText, Record
from study.data.sources import FileDataset


class ManifestDataset(FileDataset):
    """Images listed in a CSV; relative paths start at ``root`` (default: the CSV's folder)."""

    class Options(FileDataset.Options):
        root: OptionalPathText = Field(None, description="base of relative paths (None: the CSV's folder)")
        manifest: PathText = Field(description="path to a CSV with path,label columns")
        path_column: str = Field("path", description="column holding the image paths")
        label_column: str = Field("label", description="column holding the class names")
        patient_column: str = Field("patient_id", description="column holding patient ids (optional in the CSV)")
        split_column: str = Field("split", description="column holding train/val/test (optional in the CSV)")

    name = "manifest"
    has_patients = True  # where the CSV has a patient column

    options: Options

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.manifest = Path(self.options.manifest).expanduser()
        if self.root is None:
            self.root = self.manifest.parent
        o = self.options
        self.columns = {
            "path": o.path_column,
            "label": o.label_column,
            "patient": o.patient_column,
            "split": o.split_column,
        }

    def records(self) -> list[Record]:
        if not self.manifest.is_file():
            raise DataError(f"manifest: {self.manifest} does not exist (a CSV with path,label columns)")
        try:
            df = pd.read_csv(self.manifest, dtype=str, keep_default_na=False)
        except Exception as e:  # pandas raises several types for malformed CSV
            raise DataError(f"{self.manifest}: cannot read CSV ({e})") from None
        cols = list(df.columns)
        for key in ("path", "label"):
            if self.columns[key] not in cols:
                raise DataError(
                    f"{self.manifest}: no column {self.columns[key]!r} (columns: {', '.join(cols)}); "
                    f"set {key}_column to the column holding the image {key}"
                )
        has_patient = self.columns["patient"] in cols
        has_split = self.columns["split"] in cols
        out = []
        for i, row in enumerate(df.itertuples(index=False), start=2):
            row = row._asdict() if hasattr(row, "_asdict") else dict(zip(cols, row))
            rel = row[self.columns["path"]]
            label = row[self.columns["label"]].strip()
            if not rel or not label:
                raise DataError(f"{self.manifest}:{i}: empty path or label")
            p = Path(rel)
            p = p if p.is_absolute() else self.root / p
            if not p.is_file():
                raise DataError(
                    f"{self.manifest}:{i}: image {p} does not exist; fix the {self.columns['path']!r} "
                    f"of that row (relative paths start at root {self.root}) or remove the row"
                )
            split = row[self.columns["split"]].strip().lower() if has_split else None
            if split and split not in SPLITS:
                raise DataError(f"{self.manifest}:{i}: split {split!r} is not one of {', '.join(SPLITS)}")
            patient = row[self.columns["patient"]].strip() if has_patient else None
            out.append(Record(path=p, label=label, patient_id=patient or None, split=split or None))
        if not out:
            raise DataError(f"{self.manifest}: no rows")
        return out
