"""What a spec needs from its data and this machine, checked before a study directory exists
(docs/architecture.md, CLI: a bad input never leaves a half-written study directory behind).

The spec itself was checked at the door (``load_spec``: names against the registries, hyperparameters
against their declarations); what is left needs the files a trial reads: every dataset entry must decode
(into the data cache, where the trials find it), every noise kind must accept every rate on every dataset,
a shifted test set must decode and have its training dataset's classes (same names, same order) and
channels, stored images (training and shifted test) must be at least the network input
(``model.resolution``: a trial crops them to it, never enlarges them), the ImageNet weight file must be
there for an entry that starts from it (nothing is downloaded at run time), a local weight file
(``init: {weights: PATH}``) must be there and fit the backbone (a torchvision ResNet or a timm
architecture), a dataset that MICLe pretrains on must have a patient with several images, and an LNL
entry's optimiser settings must agree with each other and with its epochs. All problems are reported at
once, as a ``SpecError`` against the spec file.
"""

from __future__ import annotations

import numpy as np
import torch

from study.data import DataError, ImageData
from study.experiment import load_dataset, load_shifted_test, noise_options
from study.models import build_backbone
from study.models.timm_encoders import create_timm
from study.noise import inject_noise, recorded_noise
from study.ssl.init import (
    StateDict,
    WeightsInit,
    backbone_shapes,
    find_imagenet_weights,
    read_state_dict,
    timm_state,
    weights_mismatch,
    without_classifier,
)
from study.ssl.micle import NoPatientsError, require_patients
from study.tuning.spec import ShiftedTestSpec, Spec, SpecError
from study.tuning.studydir import DatasetFacts

#: labels the noise check corrupts per dataset (enough to meet every kind's conditions)
NOISE_SAMPLE = 200


def preflight(spec: Spec, source: str, data_cache: str) -> dict[str, DatasetFacts]:
    """Check the spec against its datasets and weight files; the facts of each dataset (decoded into
    ``data_cache`` on the way, shifted test sets too), or a ``SpecError`` from ``source`` listing every problem."""
    problems: list[tuple[str, str]] = []
    facts: dict[str, DatasetFacts] = {}
    for i, entry in enumerate(spec.datasets):
        try:
            data = load_dataset(spec, entry.key, data_cache)
        except (DataError, TypeError, ValueError) as e:
            problems.append((f"datasets[{i}]", str(e)))
            continue
        facts[entry.key] = DatasetFacts(
            images=len(data), classes=data.num_classes, resolution=data.resolution, channels=data.channels
        )
        problems += noise_problems(spec, data, entry.key)
        problems += size_problems(spec, data, f"datasets[{i}].options.resolution")
        problems += micle_problems(spec, data, entry.key, i)
        if entry.shifted_test is not None:
            problems += shifted_test_problems(spec, entry.shifted_test, data, data_cache, f"datasets[{i}].shifted_test")
    problems += weight_problems(spec)
    problems += weight_file_problems(spec)
    if problems:
        raise SpecError(source, problems)
    return facts


def noise_problems(spec: Spec, data: ImageData, dataset_key: str) -> list[tuple[str, str]]:
    """Noise settings that ``inject_noise`` refuses on this dataset (a rate too high for its classes, groups
    that do not fit it), and recorded sources it cannot give (an annotator who left images unlabelled)."""
    problems = []
    sample = np.arange(min(NOISE_SAMPLE, len(data)))
    for kind in spec.noise.kinds:
        for rate in spec.noise.rates:
            try:
                inject_noise(
                    data.labels[sample],
                    data.num_classes,
                    kind,
                    rate,
                    0,
                    **noise_options(spec, data, dataset_key, kind, sample),
                )
            except (ValueError, TypeError, KeyError) as e:
                problems.append(("noise", f"{kind} at rate {rate} on {dataset_key}: {e}"))
    for j, source in enumerate(spec.noise.recorded):
        if data.annotations is None or data.annotators is None:
            problems.append((f"noise.recorded[{j}]", f"{dataset_key} has no recorded annotators' labels"))
            continue
        try:
            recorded_noise(data.labels, data.annotations, data.annotators, data.num_classes, source, 0)
        except ValueError as e:
            problems.append((f"noise.recorded[{j}]", f"{source} on {dataset_key}: {e}"))
    return problems


def shifted_test_problems(
    spec: Spec, shifted: ShiftedTestSpec, data: ImageData, data_cache: str, where: str
) -> list[tuple[str, str]]:
    """A shifted test set that does not decode, or that a model trained on ``data`` cannot be scored on:
    its labels are compared with the predictions by class index, so its class names must be the training
    dataset's in the same order, and its images must have the training images' channels."""
    try:
        sdata = load_shifted_test(shifted, data.resolution, data_cache)  # as the trial loads it
    except (DataError, TypeError, ValueError) as e:
        return [(where, f"the shifted test set ({shifted.name}) does not load: {e}")]
    problems = size_problems(spec, sdata, f"{where}.options.resolution")
    if sdata.class_names != data.class_names:
        problems.append((where, class_mismatch(data.class_names, sdata.class_names, data.name)))
    if sdata.channels != data.channels:
        problems.append(
            (
                where,
                f"the shifted test set has {sdata.channels}-channel images, the training data ({data.name}) "
                f"{data.channels}-channel ones; set shifted_test.options.channels: {data.channels}",
            )
        )
    return problems


def size_problems(spec: Spec, data: ImageData, where: str) -> list[tuple[str, str]]:
    """Stored images smaller than the network input (``model.resolution``): a trial crops stored images down
    to the input side (random crops in training, the centre in evaluation) and never enlarges them."""
    side = spec.model.resolution
    if side is None or data.resolution >= side:
        return []
    return [
        (
            where,
            f"{data.name} is stored at {data.resolution} px, smaller than the network input model.resolution "
            f"{side} px; set {where.rpartition('.')[0]}.resolution to at least {side} (e.g. 256 for 224 px crops) "
            "or lower model.resolution",
        )
    ]


def class_mismatch(train: list[str], shifted: list[str], dataset: str) -> str:
    """What differs between the training classes and the shifted test's, and the fix."""
    missing = [c for c in train if c not in shifted]
    extra = [c for c in shifted if c not in train]
    what = []
    if missing:
        what.append(f"missing from the shifted test set: {', '.join(missing)}")
    if extra:
        what.append(f"not classes of {dataset}: {', '.join(extra)}")
    if not what:
        what.append(f"the same classes in another order ({', '.join(shifted)}; {dataset}: {', '.join(train)})")
    return (
        f"its classes differ from the training dataset's: {'; '.join(what)}. Predictions are scored by class "
        f"index, so the shifted test set needs exactly the classes {', '.join(train)}, in that order: rename, add "
        "or remove its classes (folder and manifest datasets order them by name)"
    )


def weight_problems(spec: Spec) -> list[tuple[str, str]]:
    """SSL entries that start from torchvision's ImageNet ResNet-18 weights when this machine has no such
    file (looked up as the trials look it up, ``study.ssl.init.find_imagenet_weights``)."""
    needs = [
        (f"ssl[{i}].method" if s.method == "imagenet" else f"ssl[{i}].init", s)
        for i, s in enumerate(spec.ssl)
        if s.method == "imagenet" or s.init == "imagenet"
    ]
    if not needs:
        return []
    try:
        find_imagenet_weights()
    except FileNotFoundError as e:
        return [
            (where, f"SSL entry {s.key!r} starts from torchvision's ImageNet ResNet-18 weights: {e}")
            for where, s in needs
        ]
    return []


def weight_file_problems(spec: Spec) -> list[tuple[str, str]]:
    """SSL entries whose local weight file (``init: {weights: PATH}``) is missing, unreadable, or does not fit
    the spec's backbone: read as the trial reads it (``study.ssl.init.read_state_dict``) and compared, key by
    key and shape by shape, with the backbone it is loaded into built on the meta device (no memory, no
    weights): a torchvision ResNet with its classifier dropped, or a timm architecture at its native size with
    the keys of its ``pretrained_cfg`` classifier dropped (``study.ssl.init.timm_state``)."""
    problems = []
    for i, s in enumerate(spec.ssl):
        if not isinstance(s.init, WeightsInit):
            continue
        where = f"ssl[{i}].init.weights"
        try:
            state = read_state_dict(s.init.path, s.init.prefix)
        except (OSError, ValueError, RuntimeError) as e:  # torch.load raises RuntimeError on a corrupt file
            problems.append((where, f"SSL entry {s.key!r}: {e}"))
            continue
        backbone = spec.backbone_of(s.key)
        problem = fit_problem(backbone, s.init, state)
        if problem:
            problems.append(
                (
                    where,
                    f"SSL entry {s.key!r}: {s.init.path} does not fit backbone {backbone} ({problem}); "
                    f"check {'ssl[' + str(i) + '].backbone' if s.backbone else 'model.backbone'}, the file, and "
                    "init.prefix (docs/weights.md)",
                )
            )
    return problems


def fit_problem(backbone: str, init: WeightsInit, state: StateDict) -> str | None:
    """What keeps the file's ``state`` (prefix already stripped) from loading into ``backbone`` as the trial
    loads it (``study.ssl.init.start_backbone``); None when it fits."""
    with torch.device("meta"):
        if init.format == "timm":
            shapes = backbone_shapes(create_timm(backbone, 3))
            return weights_mismatch(shapes, timm_state(state, backbone, 3))
        shapes = backbone_shapes(build_backbone(backbone, 3, 224))
    return weights_mismatch(shapes, without_classifier(state))


def micle_problems(spec: Spec, data: ImageData, dataset_key: str, index: int) -> list[tuple[str, str]]:
    """MICLe entries paired with this dataset when none of its patients has two images (the door only knew
    the dataset could have patients: a manifest without a patient column, or with one image per patient)."""
    pairs = {(p.dataset, p.ssl) for p in spec.subset} if spec.subset else None
    problems = []
    for i, s in enumerate(spec.ssl):
        if s.method != "micle" or (pairs is not None and (dataset_key, s.key) not in pairs):
            continue
        try:
            require_patients(data.patient_ids, f"datasets[{index}] ({dataset_key})")
        except NoPatientsError as e:
            problems.append((f"ssl[{i}].method", str(e)))
    return problems
