"""COVID-QU-Ex (Tahir et al. 2021): chest X-rays, COVID-19 / Non-COVID infection / Normal.

Expected layout (the Kaggle archive, https://www.kaggle.com/datasets/anasmohammedtahir/covidqu):
``root/Lung Segmentation Data/Lung Segmentation Data/{Train,Val,Test}/{COVID-19,Non-COVID,Normal}/images/*.png``
(``root`` may also point at any folder holding ``Train``, ``Val`` and ``Test`` directly). The official
train/val/test split is kept. Images are grayscale; lung masks are not used.
"""

from __future__ import annotations

from pathlib import Path

from study.data.base import DataError, Record, image_files, require_dir
from study.data.sources import FileDataset

CLASSES = ["COVID-19", "Non-COVID", "Normal"]
SPLIT_DIRS = {"Train": "train", "Val": "val", "Test": "test"}


class CovidQuEx(FileDataset):
    name = "covid_qu_ex"
    approx_images = 33_920
    known_classes = tuple(CLASSES)
    default_channels = 1
    noise_groups = (("COVID-19", "Non-COVID"),)

    def _split_root(self, root: Path) -> Path:
        for cand in (root, root / "Lung Segmentation Data", root / "Lung Segmentation Data" / "Lung Segmentation Data"):
            if (cand / "Train").is_dir():
                return cand
        raise DataError(
            f"covid_qu_ex: no Train/ folder under {root} (expected 'Lung Segmentation Data/Lung Segmentation "
            "Data/{Train,Val,Test}/<class>/images/')"
        )

    def records(self) -> list[Record]:
        base = self._split_root(require_dir(self.root, self.name, "the unpacked COVID-QU-Ex archive"))
        recs = []
        for folder, split in SPLIT_DIRS.items():
            if not (base / folder).is_dir():
                continue
            for c in CLASSES:
                d = base / folder / c / "images"
                if not d.is_dir():
                    d = base / folder / c
                if d.is_dir():
                    recs += [Record(path=f, label=c, split=split) for f in image_files(d) if "mask" not in f.parts[-2]]
        if not recs:
            raise DataError(f"covid_qu_ex: no images under {base}/<Train|Val|Test>/<class>/images/")
        return recs

    def class_names(self, records: list[Record]) -> list[str]:
        return list(CLASSES)
