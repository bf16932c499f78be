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
    #: the 23 class folders of the public release
    known_classes = (
        "Acne and Rosacea Photos",
        "Actinic Keratosis Basal Cell Carcinoma and other Malignant Lesions",
        "Atopic Dermatitis Photos",
        "Bullous Disease Photos",
        "Cellulitis Impetigo and other Bacterial Infections",
        "Eczema Photos",
        "Exanthems and Drug Eruptions",
        "Hair Loss Photos Alopecia and other Hair Diseases",
        "Herpes HPV and other STDs Photos",
        "Light Diseases and Disorders of Pigmentation",
        "Lupus and other Connective Tissue diseases",
        "Melanoma Skin Cancer Nevi and Moles",
        "Nail Fungus and other Nail Disease",
        "Poison Ivy Photos and other Contact Dermatitis",
        "Psoriasis pictures Lichen Planus and related diseases",
        "Scabies Lyme Disease and other Infestations and Bites",
        "Seborrheic Keratoses and other Benign Tumors",
        "Systemic Disease",
        "Tinea Ringworm Candidiasis and other Fungal Infections",
        "Urticaria Hives",
        "Vascular Tumors",
        "Vasculitis Photos",
        "Warts Molluscum and other Viral Infections",
    )
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
