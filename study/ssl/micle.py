"""MICLe: Multi-Instance Contrastive Learning (Azizi et al. 2021, Big Self-Supervised Models Advance
Medical Image Classification)."""

from __future__ import annotations

import numpy as np
import torch

from study.data.pipeline import to_float
from study.ssl.simclr import SimCLR

Groups = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def patient_groups(patient_ids: np.ndarray | None, n: int) -> Groups:
    """(order, start, count, pos): the samples of sample i's patient are ``order[start[i]:start[i] + count[i]]``
    and i itself is at ``start[i] + pos[i]``. Without patient ids every sample is its own patient."""
    if patient_ids is None:
        return np.arange(n), np.arange(n), np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    _, inverse, counts = np.unique(np.asarray(patient_ids), return_inverse=True, return_counts=True)
    order = np.argsort(inverse, kind="stable")
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    start = first[inverse]
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n) - start[order]
    return order, start, counts[inverse], pos


def multi_image_patients(patient_ids: np.ndarray | None) -> int:
    """How many patients have two images or more (0 without patient ids)."""
    if patient_ids is None or len(patient_ids) == 0:
        return 0
    _, counts = np.unique(np.asarray(patient_ids), return_counts=True)
    return int((counts > 1).sum())


class NoPatientsError(ValueError):
    """MICLe on images none of whose patients has a second image: it would be SimCLR under another name."""


def require_patients(patient_ids: np.ndarray | None, where: str) -> None:
    """Raise ``NoPatientsError`` unless some patient in ``patient_ids`` has two images or more."""
    if multi_image_patients(patient_ids) > 0:
        return
    what = "carry no patient ids" if patient_ids is None else "each come from a different patient"
    raise NoPatientsError(
        f"{where}: MICLe draws its positive pairs from two images of one patient, and these images {what}; "
        "use a dataset with several images per patient (a manifest with a patient_id column, see "
        "docs/datasets.md), or SimCLR"
    )


def micle_partners(index: torch.Tensor, groups: Groups, generator: torch.Generator) -> torch.Tensor:
    """For each sample in ``index``, another image of the same patient drawn uniformly, or the sample
    itself when its patient has one image (then the pair is two crops of one image, as in SimCLR)."""
    order, start, count, pos = groups
    idx = index.cpu().numpy()
    c = count[idx]
    # an offset r uniform over the c - 1 other members: draw in [0, c - 1), then skip the sample's own slot
    u = torch.rand(len(idx), generator=generator).numpy()
    r = np.minimum((u * np.maximum(c - 1, 1)).astype(np.int64), np.maximum(c - 2, 0))
    r = np.where(r >= pos[idx], r + 1, r)
    partner = np.where(c > 1, order[start[idx] + np.minimum(r, c - 1)], idx)
    return torch.as_tensor(partner, dtype=torch.long)


class MICLe(SimCLR):
    """SimCLR whose positive pair is a crop of one image and a crop of another image of the same patient
    (Azizi et al. 2021: different views/visits of one case carry the same pathology under natural
    variation), and two crops of the same image for a patient with a single image (the paper applies MICLe
    "when multiple images are available"). The other 2(B-1) views of the batch are the negatives.
    Hyperparameters as SimCLR. Images without any multi-image patient are refused (``NoPatientsError``):
    MICLe never silently becomes SimCLR."""

    name = "micle"
    #: measured by ``python -m benchmarks method_cost`` (2026-12-04, 2 CPU cores; docs/benchmarks.md)
    step_cost = 2.61

    class Hparams(SimCLR.Hparams):
        """SimCLR's, unchanged."""

    hp: Hparams

    def bind(self, images: torch.Tensor, patient_ids: np.ndarray | None) -> None:
        require_patients(patient_ids, "MICLe's training images")
        self.images = images
        self.groups = patient_groups(patient_ids, images.shape[0])

    def pair(self, x: torch.Tensor, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        partners = micle_partners(index, self.groups, self.generator).to(self.images.device)
        x_partner = to_float(self.images[partners].to(x.device), self.norm)  # uint8 across, if held on the host
        return self.view(x), self.view(x_partner)
