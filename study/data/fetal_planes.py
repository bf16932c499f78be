"""FETAL_PLANES_DB (Burgos-Artizzu et al. 2020): maternal-fetal ultrasound planes.

Expected layout (https://zenodo.org/record/3904280): ``root/FETAL_PLANES_DB_data.csv`` (semicolon-separated,
columns Image_name, Patient_num, Plane, Brain_plane, Operator, US_Machine, Train) and
``root/Images/<Image_name>.png``. Labels are the six ``Plane`` values; the CSV's ``Train`` flag (1 train,
0 test) is kept as the official split, and ``Patient_num`` as the patient id.
"""

from __future__ import annotations

import pandas as pd

from study.data.base import DataError, Record, require_dir
from study.data.sources import FileDataset

CSV = "FETAL_PLANES_DB_data.csv"
CLASSES = ["Fetal abdomen", "Fetal brain", "Fetal femur", "Fetal thorax", "Maternal cervix", "Other"]


class FetalPlanes(FileDataset):
    name = "fetal_planes"
    approx_images = 12_400
    known_classes = tuple(CLASSES)
    has_patients = True
    default_channels = 1
    noise_groups = (("Fetal abdomen", "Fetal thorax"), ("Fetal femur", "Other"))

    def records(self) -> list[Record]:
        root = require_dir(self.root, self.name, f"the folder holding {CSV} and Images/")
        csv = root / CSV
        if not csv.is_file():
            raise DataError(f"fetal_planes: {csv} is missing")
        df = pd.read_csv(csv, sep=";", dtype=str, keep_default_na=False)
        df.columns = [c.strip() for c in df.columns]
        need = ["Image_name", "Patient_num", "Plane", "Train"]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise DataError(f"{csv}: missing columns {missing} (columns: {', '.join(df.columns)})")
        recs = []
        for i, row in enumerate(df.itertuples(index=False), start=2):
            d = dict(zip(df.columns, row))
            plane = d["Plane"].strip()
            if plane not in CLASSES:
                raise DataError(f"{csv}:{i}: Plane {plane!r} is not one of {', '.join(CLASSES)}")
            path = root / "Images" / f"{d['Image_name'].strip()}.png"
            if not path.is_file():
                raise DataError(f"{csv}:{i}: image {path} does not exist")
            flag = d["Train"].strip()
            if flag not in ("0", "1"):
                raise DataError(f"{csv}:{i}: Train must be 0 or 1, got {flag!r}")
            recs.append(
                Record(
                    path=path,
                    label=plane,
                    patient_id=d["Patient_num"].strip(),
                    split="train" if flag == "1" else "test",
                )
            )
        return recs

    def class_names(self, records: list[Record]) -> list[str]:
        return list(CLASSES)
