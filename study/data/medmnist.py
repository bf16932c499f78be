"""MedMNIST v2 / MedMNIST+ (Yang et al. 2023) ``.npz`` files from a local path.

Any 2D subset at any size (28, 64, 128, 224): ``path`` points at e.g. ``pathmnist_64.npz`` with the arrays
``{train,val,test}_images`` (N x H x W or N x H x W x 3 uint8) and ``{train,val,test}_labels`` (N x 1).
The official splits are kept. ChestMNIST is multi-label: pick one finding with ``label_index`` to get its
binary task. Get the files from https://zenodo.org/records/10519652 (no download happens here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from study.data.base import SPLITS, Arrays, DataError, PathText
from study.data.cache import file_fingerprint
from study.data.sources import ArrayDataset

_LAYOUT = (
    "a MedMNIST .npz holds train_images, train_labels, val_images, val_labels, test_images and "
    "test_labels (the files of https://zenodo.org/records/10519652)"
)


def _missing_arrays(files) -> list[str]:
    return [f"{s}_{k}" for s in SPLITS for k in ("images", "labels") if f"{s}_{k}" not in files]


class MedMnist(ArrayDataset):
    """A MedMNIST ``.npz``; ``channels`` defaults to the file's own (1 or 3)."""

    class Options(ArrayDataset.Options):
        path: PathText = Field(description="a MedMNIST .npz file, e.g. pathmnist_64.npz")
        label_index: int | None = Field(
            None, ge=0, description="the finding studied as a binary task in a multi-label subset (ChestMNIST)"
        )

    name = "medmnist"
    approx_images = 10_000  # a middle figure: the 2D subsets range from 780 (BreastMNIST) to 236386 (TissueMNIST)

    options: Options

    @property
    def path(self) -> Path:
        return Path(self.options.path).expanduser()

    def native_channels(self) -> int:
        if not self.path.is_file():
            raise DataError(f"medmnist: {self.path} does not exist (a MedMNIST .npz file)")
        try:
            with np.load(self.path) as z:
                missing = _missing_arrays(z.files)
                if missing:
                    raise DataError(
                        f"{self.path}: missing arrays {missing} (found: {', '.join(z.files) or 'none'}); {_LAYOUT}"
                    )
                shape = z["train_images"].shape
        except DataError:
            raise
        except Exception as e:
            raise DataError(f"{self.path}: not a MedMNIST .npz file ({e}); {_LAYOUT}") from None
        return 3 if len(shape) == 4 and shape[-1] == 3 else 1

    def source_key(self) -> dict:
        return {"file": file_fingerprint([self.path]), "label_index": self.options.label_index}

    def arrays(self) -> Arrays:
        try:
            z = np.load(self.path)
        except Exception as e:
            raise DataError(f"{self.path}: cannot read .npz ({e})") from None
        with z:
            missing = _missing_arrays(z.files)
            if missing:
                raise DataError(f"{self.path}: missing arrays {missing} (found: {', '.join(z.files)}); {_LAYOUT}")
            images, labels, split = [], [], []
            for s in SPLITS:
                im, lab = z[f"{s}_images"], z[f"{s}_labels"]
                if im.ndim not in (3, 4):
                    raise DataError(f"{self.path}: {s}_images has shape {im.shape}; 3D subsets are not supported")
                lab = np.asarray(lab)
                if lab.ndim == 2 and lab.shape[1] > 1:
                    if self.options.label_index is None:
                        raise DataError(
                            f"{self.path}: labels are multi-label ({lab.shape[1]} findings); set label_index to "
                            "one finding to study its binary task"
                        )
                    lab = lab[:, self.options.label_index]
                images.append(im)
                labels.append(lab.reshape(-1).astype(np.int64))
                split += [s] * len(im)
        y = np.concatenate(labels)
        k = 2 if self.options.label_index is not None else int(y.max()) + 1
        return Arrays(
            images=np.concatenate(images).astype(np.uint8),
            labels=y,
            class_names=[str(i) for i in range(k)],
            official_split=np.array(split),
        )
