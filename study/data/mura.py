"""MURA v1.1 (Rajpurkar et al. 2017): musculoskeletal radiographs, normal vs abnormal, labelled per study.

Expected layout (https://stanfordmlgroup.github.io/competitions/mura/): ``root/MURA-v1.1/`` holding
``train_image_paths.csv``, ``valid_image_paths.csv`` (one image path per line, relative to ``root``),
``train_labeled_studies.csv`` and ``valid_labeled_studies.csv`` (``study_dir/,label`` per line) and the
images ``{train,valid}/XR_<PART>/patient<id>/study<k>_<positive|negative>/image<j>.png``. Every image takes
its study's label; the patient id comes from the path, and the study id is the study folder
(``{train,valid}/XR_<PART>/patient<id>/study<k>_<label>``), so the test metrics are also given per study
(``test_study_*``: a study's probability is the mean of its images', as MURA's benchmark scores it);
``valid`` is kept as the test split (it is the public test set, as in Khanal et al. 2024). ``body_parts``
restricts to some of the seven parts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, Field

from study.data.base import DataError, Record, require_dir
from study.data.sources import FileDataset

CLASSES = ["normal", "abnormal"]


BODY_PARTS = ("ELBOW", "FINGER", "FOREARM", "HAND", "HUMERUS", "SHOULDER", "WRIST")


def _body_parts(parts: list[str] | None) -> list[str] | None:
    if not parts:
        return None
    upper = [p.upper() for p in parts]
    unknown = [p for p in upper if p not in BODY_PARTS]
    if unknown:
        raise ValueError(f"unknown body part {unknown[0]!r} (allowed: {', '.join(BODY_PARTS)})")
    return upper


class Mura(FileDataset):
    class Options(FileDataset.Options):
        body_parts: Annotated[list[str] | None, AfterValidator(_body_parts)] = Field(
            None, description=f"keep only these parts ({', '.join(BODY_PARTS)}; any case); None: all seven"
        )

    name = "mura"
    default_channels = 1
    approx_images = 40_005
    known_classes = tuple(CLASSES)
    has_patients = True

    options: Options

    def records(self) -> list[Record]:
        root = require_dir(self.root, self.name, "the folder holding MURA-v1.1/")
        base = root / "MURA-v1.1" if (root / "MURA-v1.1").is_dir() else root
        top = base.parent
        recs = []
        for part, split in (("train", "train"), ("valid", "test")):
            studies_csv = base / f"{part}_labeled_studies.csv"
            paths_csv = base / f"{part}_image_paths.csv"
            if not studies_csv.is_file() or not paths_csv.is_file():
                if part == "train":
                    raise DataError(f"mura: {studies_csv.name} and {paths_csv.name} are required in {base}")
                continue
            labels = {}
            for i, line in enumerate(studies_csv.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                study, _, lab = line.strip().rpartition(",")
                if lab not in ("0", "1"):
                    raise DataError(f"{studies_csv}:{i}: label must be 0 or 1, got {lab!r}")
                labels[study.rstrip("/")] = int(lab)
            for i, line in enumerate(paths_csv.read_text().splitlines(), start=1):
                rel = line.strip()
                if not rel:
                    continue
                p = Path(rel)
                study = str(p.parent)
                if study not in labels:
                    raise DataError(f"{paths_csv}:{i}: study {study} has no label in {studies_csv.name}")
                body = next((s for s in p.parts if s.startswith("XR_")), "")
                if self.options.body_parts and body.removeprefix("XR_") not in self.options.body_parts:
                    continue
                patient = next((s for s in p.parts if s.startswith("patient")), None)
                path = top / p
                if not path.is_file():
                    raise DataError(f"{paths_csv}:{i}: image {path} does not exist")
                label = CLASSES[labels[study]]
                recs.append(Record(path=path, label=label, patient_id=patient, split=split, study_id=study))
        if not recs:
            raise DataError(f"mura: no images listed in {base}")
        return recs

    def class_names(self, records: list[Record]) -> list[str]:
        return list(CLASSES)
