"""NCT-CRC-HE-100K (Kather et al. 2018), with CRC-VAL-HE-7K as its test set.

Expected layout (the two Zenodo archives unpacked side by side, https://zenodo.org/record/1214456):
``root/NCT-CRC-HE-100K/<CLASS>/*.tif`` and ``root/CRC-VAL-HE-7K/<CLASS>/*.tif`` with the nine classes
ADI, BACK, DEB, LYM, MUC, MUS, NORM, STR, TUM. The patches carry no patient ids.
"""

from __future__ import annotations

from study.data.base import DataError, Record, require_dir
from study.data.folder import class_folder_records
from study.data.sources import FileDataset

CLASSES = ["ADI", "BACK", "DEB", "LYM", "MUC", "MUS", "NORM", "STR", "TUM"]


class NctCrcHe(FileDataset):
    name = "nct_crc_he"
    approx_images = 107_180  # 100000 training patches + 7180 of CRC-VAL-HE-7K
    known_classes = tuple(CLASSES)
    # tissue types pathologists confuse: stroma/muscle, debris/mucus, normal mucosa/tumour epithelium
    noise_groups = (("STR", "MUS"), ("DEB", "MUC"), ("NORM", "TUM"))

    def records(self) -> list[Record]:
        root = require_dir(self.root, self.name, "a folder holding NCT-CRC-HE-100K/ and CRC-VAL-HE-7K/")
        train, test = root / "NCT-CRC-HE-100K", root / "CRC-VAL-HE-7K"
        if not train.is_dir():
            raise DataError(f"nct_crc_he: {train} is missing (unpack NCT-CRC-HE-100K.zip into root)")
        recs = class_folder_records(train, split="train")
        if test.is_dir():
            recs += class_folder_records(test, split="test")
        unknown = sorted({r.label for r in recs} - set(CLASSES))
        if unknown:
            raise DataError(f"nct_crc_he: unexpected class folders {unknown} (allowed: {', '.join(CLASSES)})")
        return recs

    def class_names(self, records: list[Record]) -> list[str]:
        return list(CLASSES)
