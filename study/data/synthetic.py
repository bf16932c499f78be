"""Synthetic class-conditional images, fast enough for unit tests, with optional multi-view patients.

Each class has a prototype: a few oriented Gabor-like stripes and blobs at class-specific positions and
frequencies; an image is its class prototype under a random shift, contrast and pixel noise. With
``views_per_patient > 1`` images come in patient groups that share a patient-specific offset and tint,
so two views of one patient are more alike than two images of the class (what MICLe exploits).
With ``annotators`` the images carry recorded labels as a manifest's annotator columns do (the stand-in of
a multi-annotator dataset, ``study launch --smoke``): each named annotator labels every image, wrong with
probability ``annotator_error`` (uniform noise: a wrong label redrawn from all classes), drawn from the
generator seed and the annotator's position.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from study.data.base import Arrays
from study.data.sources import ArrayDataset
from study.noise import inject_noise


class Synthetic(ArrayDataset):
    """Generated in memory from a seed; the compute estimate counts ``num_samples`` images."""

    class Options(ArrayDataset.Options):
        num_samples: int = Field(600, gt=0, description="images generated (at least num_classes)")
        num_classes: int = Field(4, ge=2, description="classes, each with its own prototype")
        image_size: int = Field(32, ge=8, description="side of the generated images")
        views_per_patient: int = Field(1, ge=1, description="images per patient (1: no patients)")
        noise: float = Field(0.15, ge=0.0, le=1.0, description="pixel noise standard deviation")
        seed: int = Field(0, ge=0, description="generator seed")
        test_fraction: float = Field(
            0.0, ge=0.0, lt=1.0, description="patients held out as the official test split (0: none)"
        )
        class_names: list[str] | None = Field(
            None, min_length=2, description="names of the classes (default class_0, class_1, ...)"
        )
        shift: float = Field(
            0.0, ge=0.0, le=1.0, description="distribution shift: darker, lower-contrast, tinted images (0: none)"
        )
        annotators: list[str] = Field([], description="names of simulated annotators whose labels the images carry")
        annotator_error: float = Field(
            0.3, ge=0.0, lt=1.0, description="each annotator's probability of redrawing a label from all classes"
        )

        @model_validator(mode="after")
        def _enough_samples(self) -> Synthetic.Options:
            if self.num_samples < self.num_classes:
                raise ValueError(f"num_samples ({self.num_samples}) must be >= num_classes ({self.num_classes})")
            if len(set(self.annotators)) != len(self.annotators):
                raise ValueError(f"annotators names one annotator twice ({self.annotators})")
            if self.class_names is not None and len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"class_names has {len(self.class_names)} names for num_classes {self.num_classes}; give one each"
                )
            return self

    name = "synthetic"
    default_channels = 3

    options: Options

    @classmethod
    def estimated_images(cls, options: Mapping[str, Any]) -> int:
        o: Synthetic.Options = cls.check_options(options)
        return o.num_samples

    @classmethod
    def recorded_annotators(cls, options: Mapping[str, Any]) -> list[str]:
        return list(options.get("annotators") or [])

    @classmethod
    def may_have_patients(cls, options: Mapping[str, Any]) -> bool:
        return int(options.get("views_per_patient", 1)) > 1

    def source_key(self) -> dict:
        key = self.options.model_dump(exclude=set(ArrayDataset.Options.model_fields))
        for name in (
            "class_names",
            "shift",
            "annotators",
            "annotator_error",
        ):  # added later: keys of data made without them stay the same
            if key[name] == Synthetic.Options.model_fields[name].default:
                del key[name]
        return key

    def arrays(self) -> Arrays:
        p = self.options
        n, k, s, v = p.num_samples, p.num_classes, p.image_size, p.views_per_patient
        rng = np.random.default_rng(p.seed)
        protos = _prototypes(k, s, np.random.default_rng(1234 + k * 7 + s))  # k x s x s x 3 in [0, 1]
        n_patients = -(-n // v)
        patient_class = np.arange(n_patients) % k
        rng.shuffle(patient_class)
        patient = np.repeat(np.arange(n_patients), v)[:n]
        labels = patient_class[patient]
        tint = rng.uniform(-0.15, 0.15, size=(n_patients, 1, 1, 3))
        shift_p = rng.integers(-s // 8, s // 8 + 1, size=(n_patients, 2))
        images = np.empty((n, s, s, 3), dtype=np.float32)
        for i in range(n):
            pid = patient[i]
            img = np.roll(protos[labels[i]], shift=tuple(shift_p[pid] + rng.integers(-1, 2, size=2)), axis=(0, 1))
            img = img * rng.uniform(0.7, 1.0) + tint[pid, 0] + rng.normal(0.0, p.noise, size=img.shape)
            images[i] = img
        if p.shift > 0:  # another scanner: darker, flatter, tinted
            images = images * (1.0 - 0.5 * p.shift) + p.shift * np.array([0.15, 0.05, 0.0], dtype=np.float32)
        images = (np.clip(images, 0.0, 1.0) * 255).astype(np.uint8)
        split = None
        if p.test_fraction > 0:
            test_patients = rng.permutation(n_patients)[: max(1, int(round(p.test_fraction * n_patients)))]
            split = np.where(np.isin(patient, test_patients), "test", "train")
        given = None
        if p.annotators:
            given = np.stack(
                [
                    inject_noise(labels, k, "uniform", p.annotator_error, p.seed * 1009 + a + 1).labels
                    for a in range(len(p.annotators))
                ],
                axis=1,
            )
        return Arrays(
            images=images,
            labels=labels.astype(np.int64),
            annotations=given,
            annotators=list(p.annotators) if p.annotators else None,
            class_names=list(p.class_names) if p.class_names else [f"class_{c}" for c in range(k)],
            patient_ids=np.array([f"p{q:05d}" for q in patient]) if v > 1 else None,
            official_split=split,
        )


def _prototypes(k: int, s: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    out = np.zeros((k, s, s, 3), dtype=np.float32)
    for c in range(k):
        theta = np.pi * c / k + rng.uniform(0, 0.2)
        freq = 2.0 + 1.5 * (c % 3)
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(theta) + yy * np.sin(theta)))
        cy, cx = rng.uniform(0.25, 0.75, size=2)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.02)
        colour = rng.uniform(0.3, 1.0, size=3)
        out[c] = 0.6 * stripes[..., None] * colour + 0.4 * blob[..., None]
    return out / out.max()
