"""A CSV manifest: one row per image with its path and label, optionally patient id and split.

Covers the six histopathology sets of Dedieu et al. 2024 and any user data. Column names are options.
Where several people labelled the images, ``annotator_columns`` name one column per annotator: their
labels are the images' recorded labels (``ImageData.annotations``), which a study trains on through
``noise.recorded`` (docs/noise.md); ``label_column`` then holds the reference (clean) labels, e.g. a
``clean_label`` column, against which the test split is scored and the recorded labels' rate is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, field_validator

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
        annotator_columns: list[str] = Field(
            [],
            description="columns holding each annotator's label (empty cell: not labelled by that annotator); "
            "label_column then holds the reference labels",
        )

        @field_validator("annotator_columns")
        @classmethod
        def _annotator_columns(cls, v: list[str]) -> list[str]:
            if len(set(v)) != len(v):
                raise ValueError(f"annotator_columns names a column twice ({v}); name each annotator's column once")
            for name in v:
                if not name or not all(c.isalnum() or c in "_.-" for c in name):
                    raise ValueError(
                        f"annotator column {name!r}: names are letters, digits, '_', '.' or '-' (a study names the "
                        "column in noise.recorded); rename the column"
                    )
            return v

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

    @classmethod
    def recorded_annotators(cls, options: Mapping[str, Any]) -> list[str]:
        return list(options.get("annotator_columns") or [])

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
        annotators = self.options.annotator_columns
        absent = [c for c in annotators if c not in cols]
        if absent:
            raise DataError(
                f"{self.manifest}: no column {absent[0]!r} (columns: {', '.join(cols)}); annotator_columns must "
                "name columns of the CSV"
            )
        clash = [c for c in annotators if c in (self.columns["path"], self.columns["label"])]
        if clash:
            raise DataError(
                f"{self.manifest}: {clash[0]!r} is both an annotator column and the "
                f"{'path' if clash[0] == self.columns['path'] else 'label'} column; label_column holds the "
                "reference labels, annotator_columns the annotators' own"
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
            given = tuple(row[c].strip() for c in annotators)
            if annotators and not any(given):
                raise DataError(
                    f"{self.manifest}:{i}: no annotator column ({', '.join(annotators)}) labels this image; give it "
                    "at least one annotator's label or remove the row"
                )
            out.append(Record(path=p, label=label, patient_id=patient or None, split=split or None, annotations=given))
        if not out:
            raise DataError(f"{self.manifest}: no rows")
        classes = {r.label for r in out}
        for i, r in enumerate(out, start=2):
            for column, given_label in zip(annotators, r.annotations, strict=True):
                if given_label and given_label not in classes:
                    raise DataError(
                        f"{self.manifest}:{i}: annotator column {column!r} gives {given_label!r}, which is not a class "
                        f"of the label column {self.columns['label']!r} ({', '.join(sorted(classes))}); fix the "
                        "cell or leave it empty"
                    )
        return out
