"""DermNet (Kaggle distribution, 23 classes of skin disease photographs).

Expected layout (the archive as distributed): ``root/train/<class>/*.jpg`` and ``root/test/<class>/*.jpg``;
the ``test`` folder is kept as the official test split. Get it from
https://www.kaggle.com/datasets/shubhamgoel27/dermnet (Khanal et al. 2024 use this version).
"""

from __future__ import annotations

from study.data.base import DataError, Record, require_dir
from study.data.folder import class_folder_records
from study.data.sources import FileDataset


class DermNet(FileDataset):
    name = "dermnet"
    approx_images = 19_500
    noise_groups = (
        (
            "Eczema Photos",
            "Atopic Dermatitis Photos",
            "Psoriasis pictures Lichen Planus and related diseases",
            "Seborrheic Keratoses and other Benign Tumors",
        ),
        (
            "Melanoma Skin Cancer Nevi and Moles",
            "Light Diseases and Disorders of Pigmentation",
            "Actinic Keratosis Basal Cell Carcinoma and other Malignant Lesions",
        ),
        (
            "Tinea Ringworm Candidiasis and other Fungal Infections",
            "Cellulitis Impetigo and other Bacterial Infections",
            "Warts Molluscum and other Viral Infections",
            "Herpes HPV and other STDs Photos",
        ),
    )

    def records(self) -> list[Record]:
        root = require_dir(self.root, self.name, "the DermNet folder with train/ and test/ class folders")
        for s in ("train", "test"):
            if not (root / s).is_dir():
                raise DataError(f"dermnet: {root / s} is missing (expected root/train/<class>/ and root/test/<class>/)")
        return class_folder_records(root / "train", split="train") + class_folder_records(root / "test", split="test")
