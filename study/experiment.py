"""The one recipe of an LNL trial: from (spec, point, hyperparameters, device) to a trained and tested model.

``build_trial`` loads the dataset from the decode cache, splits it, corrupts the train (and, by default,
validation) labels with the trial's seed, builds the encoder (the stage-1 encoder from the cache, or a
fresh one), the model, the loaders with the spec's augmentation and the LNL algorithm. ``Trial.fit``
trains with ``study.train.fit`` (noisy-validation selection), ``Trial.final_metrics`` evaluates the
clean test split (and the shifted test set, where the spec has one) at the selected epoch, and
``Trial.write_artifacts`` writes what MLflow records. The Ray trainable (``study.tuning.trainables``),
``python -m study.single`` and the benchmarks' plain loop (``benchmarks/_plain.py``) all use it, so the
three train the same thing; only the trainable adds Ray's parts (checkpoints, reports). ``build_pack``
builds the members of a packed trial (several hyperparameter settings at one point) on one copy of the
data, each as ``build_trial`` would build it alone.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from study import storage
from study.data import DATASETS, ImageData, Splits, get_dataset, make_splits
from study.data.pipeline import AugmentConfig, Normalization, TensorLoader, normalization
from study.data.splits import with_labelled_subset
from study.lnl import ALGORITHMS, Algorithm, OptimConfig
from study.lnl.base import LoaderHparams, class_priors, expected_noise_fraction
from study.lnl.linear_probe import EmbeddingInput, embeddings_dataset_key, encoder_embeddings, file_hash
from study.metrics import classification_metrics
from study.models import Classifier, build_backbone
from study.noise import (
    OPTION_KINDS,
    NoisyLabels,
    class_targets,
    inject_noise,
    instance_features,
    recorded_noise,
    recorded_source,
)
from study.ssl import PretrainRequest, load_encoder, pretrain
from study.train import EarlyStopping, FitResult, PackMember, final_test, fit, predict_probs
from study.tuning.plan import Point
from study.tuning.spec import AugmentSpec, LNLSpec, ShiftedTestSpec, Spec

#: evaluation batch size (validation, test): no gradients, so larger than any training batch
EVAL_BATCH = 512


# -- data ---------------------------------------------------------------------------------------------


def dataset_options(spec: Spec, key: str) -> dict[str, Any]:
    """The dataset entry's options, with the spec's model resolution unless the entry sets its own."""
    d = spec.dataset_map[key]
    opts = dict(d.options)
    if spec.model.resolution and "resolution" not in opts:
        opts["resolution"] = spec.model.resolution
    return opts


def load_dataset(spec: Spec, key: str, data_cache: str | Path) -> ImageData:
    """The decoded dataset of the entry ``key`` (decoded once into ``data_cache``)."""
    return get_dataset(spec.dataset_map[key].name, **dataset_options(spec, key)).load(data_cache)


def noise_options(
    spec: Spec, data: ImageData, key: str, kind: str, indices: np.ndarray | None = None
) -> dict[str, Any]:
    """``inject_noise`` options of one noise kind: the spec's options that apply to the kind
    (``study.noise.OPTION_KINDS``); for ``class_dependent`` the groups of the dataset entry (by class name or
    index), else the dataset's own, and the entry's class scale; for ``asymmetric`` the spec's ``targets`` by
    class name or index as class indices (``study.noise.class_targets``); for ``instance_dependent`` and
    ``hard_instance`` the features of the images whose labels are corrupted (``indices`` into ``data``,
    default all; ``study.noise.instance_features``)."""
    opts = {name: v for name, v in spec.noise.options.items() if kind in OPTION_KINDS.get(name, ())}
    if kind == "class_dependent" and "groups" not in opts:
        groups = spec.dataset_map[key].noise_groups
        if groups:
            index = {c: i for i, c in enumerate(data.class_names)}
            opts["groups"] = [[index[g] if isinstance(g, str) else int(g) for g in grp] for grp in groups]
        else:
            opts["groups"] = data.noise_groups
    scale = spec.dataset_map[key].noise_class_scale
    if kind == "class_dependent" and scale:
        opts["class_scale"] = class_scale(scale, data.class_names)
    if kind == "asymmetric" and "targets" in opts:
        opts["targets"] = class_targets(opts["targets"], data.class_names)
    if kind in OPTION_KINDS["features"]:
        opts["features"] = instance_features(data.images, indices)
    return opts


def class_scale(scale: dict[str, float], class_names: list[str]) -> list[float]:
    """A dataset entry's ``noise_class_scale`` (by class name or index) as one factor per class (default 1)."""
    index = {c: i for i, c in enumerate(class_names)}
    out = [1.0] * len(class_names)
    for name, factor in scale.items():
        i = index.get(name, int(name) if name.isdigit() and int(name) < len(out) else None)
        if i is None:
            raise ValueError(
                f"noise_class_scale: {name!r} is not a class of this dataset (classes: {', '.join(class_names)})"
            )
        out[i] = float(factor)
    return out


def load_shifted_test(shifted: ShiftedTestSpec, resolution: int, data_cache: str | Path) -> ImageData:
    """A dataset entry's shifted test set, at the training data's resolution unless its options set one."""
    return get_dataset(shifted.name, **{"resolution": resolution, **shifted.options}).load(data_cache)


def trial_splits(spec: Spec, data: ImageData, point: Point) -> Splits:
    """The trial's splits: train/val/test by the point's seed, the training part cut to the point's labelled
    fraction (stratified, nested across fractions; ``study.data.splits.labelled_subset``). The rest of the
    training split is not used by the trial; stage-1 pretraining, which reads no labels, keeps all of it."""
    ds = spec.dataset_map[point.dataset]
    splits = make_splits(data, ds.splits.val_fraction, ds.splits.test_fraction, seed=point.seed)
    return with_labelled_subset(splits, np.asarray(data.labels), point.label_fraction, point.seed)


def corrupt(spec: Spec, data: ImageData, splits: Splits, point: Point) -> tuple[np.ndarray, NoisyLabels]:
    """Labels of the whole dataset with the train (and, unless the spec keeps them clean, validation)
    samples corrupted at the point's noise, or given their recorded labels (``recorded:<source>``: the
    annotators' own, ``study.noise.recorded_noise``); test labels stay clean (the reference labels).
    ``instance_dependent`` noise reads the features of those samples' images, standardised over them
    (``noise_options``)."""
    labels = np.asarray(data.labels)
    idx = np.concatenate([splits.train, splits.val]) if spec.noise.noisy_validation else splits.train
    source = recorded_source(point.noise_kind)
    if source is not None:
        if data.annotations is None or data.annotators is None:
            raise ValueError(f"{point.noise_kind}: {point.dataset} has no recorded annotators' labels")
        noisy = recorded_noise(
            labels[idx], data.annotations[idx], data.annotators, data.num_classes, source, point.seed
        )
    else:
        noisy = inject_noise(
            labels[idx],
            data.num_classes,
            point.noise_kind,
            point.noise_rate,
            point.seed,
            **noise_options(spec, data, point.dataset, point.noise_kind, idx),
        )
    out = labels.copy()
    out[idx] = noisy.labels
    return out, noisy


def augmentation(spec: Spec, point: Point) -> AugmentConfig | None:
    """The training augmentation: the LNL entry's, else the dataset entry's, else the dataset's default."""
    chosen: AugmentSpec | str | None = spec.lnl_map[point.lnl].augment
    if chosen is None:
        chosen = spec.dataset_map[point.dataset].augment
    if chosen is None:
        default: AugmentConfig | None = DATASETS[spec.dataset_map[point.dataset].name].default_augment
        return default
    if chosen == "none":
        return None
    assert isinstance(chosen, AugmentSpec)
    return chosen.config()


# -- encoder ------------------------------------------------------------------------------------------


def pretrain_request(spec: Spec, dataset_key: str, ssl_key: str, seed: int) -> PretrainRequest:
    """The stage-1 job that produces the encoder of (dataset entry, SSL entry, seed)."""
    d, s = spec.dataset_map[dataset_key], spec.ssl_map[ssl_key]
    return PretrainRequest(
        dataset=d.name,
        dataset_options=dataset_options(spec, dataset_key),
        split_seed=seed,
        method=s.method,
        hparams=dict(s.hparams),
        backbone=spec.backbone_of(ssl_key),
        resolution=spec.model.resolution,
        epochs=s.epochs_for(dataset_key),
        init=s.init,
        seed=seed,
        batch_size=s.batch_size,
        val_fraction=d.splits.val_fraction,
        test_fraction=d.splits.test_fraction,
    )


def encoder_file(
    spec: Spec,
    point: Point,
    cache_dir: str | Path,
    data_cache: str | Path,
    device: torch.device,
    owner: str | None = None,
) -> Path:
    """The stored stage-1 encoder of the trial (reused from the cache, or trained here under the cache's
    lock)."""
    request = pretrain_request(spec, point.dataset, point.ssl, point.seed)
    budget = device_budget(spec, device, "pretrain")
    return Path(
        pretrain(request, cache_dir, device=device, data_cache_dir=data_cache, owner=owner, device_budget=budget)
    )


def build_encoder(
    spec: Spec,
    point: Point,
    cache_dir: str | Path,
    data_cache: str | Path,
    device: torch.device,
    owner: str | None = None,
) -> torch.nn.Module:
    """The trial's encoder from stage 1 (``encoder_file``), on the CPU.

    Leaves torch's global generator seeded with the trial's seed, so what is initialised next (the heads)
    does not depend on whether this process trained the encoder or found it in the cache."""
    encoder = load_encoder(encoder_file(spec, point, cache_dir, data_cache, device, owner), device="cpu")
    torch.manual_seed(point.seed)
    return encoder


@dataclass
class Embedder:
    """The embeddings of a frozen stage-1 encoder, computed once per (encoder file, dataset, preprocessing)
    into the cache (``CACHE/embeddings/``) and read from there by every later trial and study: the inputs of
    a trial whose algorithm trains on embeddings (``Algorithm.on_embeddings``)."""

    path: Path
    cache_dir: str | Path
    crop: int | None
    norm: Normalization
    device: torch.device

    def __call__(self, data: ImageData) -> np.ndarray:
        """N x D embeddings of every image of ``data``; the encoder is loaded and run only on a cache miss.

        On an object-store cache (``s3://``, ``gs://``) the file lives in this node's mirror of the cache
        (``storage.local_mirror``): fetched from the bucket when another node computed it, uploaded when
        computed here."""
        remote = str(self.cache_dir) if storage.is_uri(self.cache_dir) else None
        local = storage.local_mirror(remote) if remote else Path(self.cache_dir).expanduser()
        name = f"{self.encoder_hash}-{embeddings_dataset_key(data, self.crop, self.norm)}.npy"
        if remote and not (local / "embeddings" / name).is_file():
            with contextlib.suppress(FileNotFoundError, OSError):
                storage.download_file(storage.join(remote, "embeddings", name), local / "embeddings" / name)
        before = (local / "embeddings" / name).is_file()  # here already, or fetched
        rows = np.asarray(
            encoder_embeddings(
                lambda: load_encoder(self.path, device=self.device),
                self.path,
                data,
                local,
                self.device,
                EVAL_BATCH,
                crop=self.crop,
                norm=self.norm,
                encoder_hash=self.encoder_hash,
            )
        )
        if remote and not before:
            storage.upload_file(local / "embeddings" / name, storage.join(remote, "embeddings", name))
        return rows

    @functools.cached_property
    def encoder_hash(self) -> str:
        """The encoder file's content hash, read once per embedder (a trial embeds its dataset, its test
        split and a shifted test set)."""
        return file_hash(self.path)


def point_embedder(
    spec: Spec,
    point: Point,
    cache_dir: str | Path,
    data_cache: str | Path,
    device: torch.device,
    owner: str | None = None,
) -> Embedder:
    """The embedder of the point's stored stage-1 encoder under the point's preprocessing (the model's
    resolution as the crop, the encoder's input normalisation)."""
    path = encoder_file(spec, point, cache_dir, data_cache, device, owner)
    return Embedder(path, cache_dir, spec.model.resolution, input_normalization(spec, point), device)


def embed_point(spec: Spec, point: Point, cache_dir: str | Path, data_cache: str | Path, device: torch.device) -> int:
    """Compute, or find in the cache, every embedding a trial at ``point`` reads: its dataset's and its
    shifted test set's, if any (the study's embedding step, one Ray task per encoder and dataset). Returns
    the number of rows."""
    embedder = point_embedder(spec, point, cache_dir, data_cache, device)
    data = load_dataset(spec, point.dataset, data_cache)
    rows = len(embedder(data))
    shifted = spec.dataset_map[point.dataset].shifted_test
    if shifted is not None:
        rows += len(embedder(load_shifted_test(shifted, data.resolution, data_cache)))
    return rows


def image_rows(data: ImageData) -> np.ndarray:
    """A dataset's rows as a model on images takes them: its images."""
    return data.images


def random_init(spec: Spec, point: Point) -> bool:
    """Whether the point's encoder is a random initialisation (SSL method ``random`` from no weight file)."""
    entry = spec.ssl_map[point.ssl]
    return entry.method == "random" and entry.init == "random"


def random_twin(spec: Spec, data: ImageData, point: Point, k: int) -> torch.nn.Module:
    """The random encoder of a trial's network ``k`` (1: the second): the backbone drawn again from a seed of
    (trial seed, k), as the ``random`` method draws network 0's from the trial seed. Torch's global
    generator is left as it was, so what is initialised next does not depend on how many networks exist."""
    seed = int(np.random.SeedSequence([point.seed, k, 0x7717]).generate_state(1)[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_backbone(spec.backbone_of(point.ssl), data.channels, data.resolution)


def input_normalization(spec: Spec, point: Point) -> Normalization:
    """The trial's input normalisation, as in its encoder's pretraining (``study.data.pipeline.normalization``):
    ImageNet's where the encoder starts from ImageNet weights (SSL method ``imagenet``, or ``init: imagenet``),
    a weight file's declared ``inputs`` where it starts from one (``model``: the timm backbone's
    pretrained_cfg), else the standard one."""
    request = pretrain_request(spec, point.dataset, point.ssl, point.seed)
    return normalization(request.effective_init, request.backbone)


# -- hyperparameters ----------------------------------------------------------------------------------

OPTIM_FIELDS = tuple(n for n in OptimConfig.model_fields if n != "epochs")
LOADER_FIELDS = tuple(LoaderHparams.model_fields)


def split_hparams(entry: LNLSpec, hparams: dict[str, Any]) -> tuple[OptimConfig, int, dict[str, Any]]:
    """A trial's hyperparameters as (optimiser config, batch size, the algorithm's own)."""
    optim = OptimConfig(epochs=entry.epochs, **{k: v for k, v in hparams.items() if k in OPTIM_FIELDS})
    batch = int(hparams.get("batch_size", entry.batch_size))
    own = {k: v for k, v in hparams.items() if k not in OPTIM_FIELDS and k not in LOADER_FIELDS}
    return optim, batch, own


# -- the trial ----------------------------------------------------------------------------------------


@dataclass
class Trial:
    """Everything one LNL trial trains and evaluates. ``labels`` are the dataset's labels with the
    train/val ones corrupted (indexed by dataset index); ``clean`` the true ones."""

    spec: Spec
    point: Point
    data: ImageData
    splits: Splits
    labels: np.ndarray
    noise: NoisyLabels
    algo: Algorithm
    train: TensorLoader
    val: TensorLoader
    device: torch.device
    #: a dataset's rows as the trial's model takes them: its images, or a frozen encoder's embeddings
    inputs: Callable[[ImageData], np.ndarray] = image_rows

    @property
    def entry(self) -> LNLSpec:
        return self.spec.lnl_map[self.point.lnl]

    @property
    def clean(self) -> np.ndarray:
        return np.asarray(self.data.labels)

    @property
    def stopping(self) -> EarlyStopping:
        """The entry's model selection: the monitored validation metric and the patience."""
        return EarlyStopping(self.entry.model_selection.monitor, self.entry.model_selection.patience)

    def fit(
        self,
        start_epoch: int = 0,
        result: FitResult | None = None,
        on_epoch: Callable[[int, dict[str, Any], FitResult], None] | None = None,
    ) -> FitResult:
        """Train to the entry's epochs, or until its early stopping's patience runs out (from
        ``start_epoch`` with ``result`` when restored)."""
        return fit(
            self.algo,
            self.train,
            self.val,
            self.entry.epochs,
            clean_train_labels=self.clean,
            noisy_train_labels=self.labels,
            start_epoch=start_epoch,
            result=result,
            on_epoch=on_epoch,
            stopping=self.stopping,
        )

    def pack_member(self) -> PackMember:
        """The trial as a member of a packed trial (``study.train.fit_pack``): its algorithm, its loaders and
        the training labels its diagnostics read."""
        return PackMember(self.algo, self.train, self.val, self.clean, self.labels)

    def final_metrics(self, result: FitResult, data_cache: str | Path) -> dict[str, Any]:
        """Clean-test metrics at the best noisy-validation epoch: ``test_*`` (``final_test``), ``test_study_*``
        where the dataset groups its images into studies (MURA), and ``shifted_test_*`` (f1, acc,
        balanced_acc, auroc) on the shifted test set, if any. ``final_test`` leaves the best state loaded."""
        test = self._loader(self.inputs(self.data)[self.splits.test], self.clean[self.splits.test])
        studies = None if self.data.study_ids is None else self.data.study_ids[self.splits.test]
        out = final_test(self.algo, result, test, studies)
        shifted = self.spec.dataset_map[self.point.dataset].shifted_test
        if shifted is not None:
            sdata = load_shifted_test(shifted, self.data.resolution, data_cache)
            probs, y = predict_probs(self.algo, self._loader(self.inputs(sdata), np.asarray(sdata.labels)))
            full = classification_metrics(y, probs, prefix="shifted_test_", full=True)
            out.update({k: v for k, v in full.items() if not isinstance(v, list)})
        return out

    def write_artifacts(self, folder: Path, result: FitResult, final: dict[str, Any]) -> None:
        """The best checkpoint, the noisy labels with their transition matrices (``NoisyLabels.save``:
        ``noisy_labels.csv`` and ``noise.json``), the splits, and the clean-test confusion matrix."""
        folder.mkdir(parents=True, exist_ok=True)
        torch.save({"state": result.best_state, "best_epoch": result.best_epoch}, folder / "best_checkpoint.pt")
        idx = (
            np.concatenate([self.splits.train, self.splits.val])
            if self.spec.noise.noisy_validation
            else self.splits.train
        )
        self.noise.save(folder, self.clean[idx], indices=idx)
        np.savez_compressed(folder / "splits.npz", train=self.splits.train, val=self.splits.val, test=self.splits.test)
        (folder / "confusion_matrix.json").write_text(
            json.dumps({"class_names": self.data.class_names, "matrix": final.get("test_confusion")})
        )

    def _loader(self, images: np.ndarray, labels: np.ndarray) -> TensorLoader:
        """An evaluation loader: the training loader's input side (centre crop) and normalisation."""
        return TensorLoader(
            images,
            labels,
            EVAL_BATCH,
            device=self.device,
            channels_last=self.device.type == "cuda",
            crop=self.train.crop,
            norm=self.train.norm,
            on_device=self.train.on_device,
        )


def device_memory(device: torch.device) -> int | None:
    """Bytes of memory of ``device``, or None where inputs live in host memory anyway (a CPU)."""
    if device.type != "cuda":
        return None
    return int(torch.cuda.get_device_properties(device).total_memory)


def device_budget(spec: Spec, device: torch.device, stage: str = "trial") -> int | None:
    """Bytes of inputs a trial (``stage`` "trial") or a pretraining job ("pretrain") may hold on ``device``:
    ``resources.device_data_share`` of its share of the device (``resources.<stage>.gpus``, at most one
    device), leaving the rest to the model, activations and the other jobs on the device. None on a CPU
    (``device_memory`` None), where host and device are one."""
    total = device_memory(device)
    if total is None:
        return None
    share = min(getattr(spec.resources, stage).gpus or 1.0, 1.0)
    return int(spec.resources.device_data_share * share * total)


def data_on_device(spec: Spec, nbytes: int, device: torch.device) -> bool:
    """Whether a trial's ``nbytes`` of training and validation inputs go to ``device`` (``device_budget``);
    on a CPU always."""
    budget = device_budget(spec, device)
    return budget is None or nbytes <= budget


def build_trial(
    spec: Spec,
    point: Point,
    hparams: dict[str, Any],
    device: torch.device,
    cache_dir: str | Path,
    data_cache: str | Path,
    owner: str | None = None,
) -> Trial:
    """The trial of ``point`` with ``hparams`` (a cell's fixed and sampled values), ready to ``fit``. Names
    the LNL entry fixes take the values it fixes at the point's noise setting (``LNLSpec.point_hparams``), so a
    caller that passes the entry's plain ``fixed`` still trains with its ``by_noise_kind`` values. A pack of
    one member (``build_pack``)."""
    return build_pack(spec, point, [hparams], device, cache_dir, data_cache, owner)[0]


def build_pack(
    spec: Spec,
    point: Point,
    hparams: list[dict[str, Any]],
    device: torch.device,
    cache_dir: str | Path,
    data_cache: str | Path,
    owner: str | None = None,
) -> list[Trial]:
    """The trials of a packed trial: one per entry of ``hparams``, all at ``point`` (``study.train.fit_pack``).

    The members share the decoded data, splits, noisy labels, encoder, validation loader and, among those
    with the same batch size, the training loader (one object, seeded by the point's seed as
    ``build_trial``'s: the same batches). Member ``i``'s algorithm starts from exactly the weights
    ``build_trial(spec, point, hparams[i], ...)`` gives: torch's (and NumPy's) global generators are put
    back, before each member's algorithm is built, to their state before the first's.
    """
    if not hparams:
        raise ValueError("build_pack needs the hyperparameters of at least one member")
    entry = spec.lnl_map[point.lnl]
    on_gpu = device.type == "cuda"
    torch.manual_seed(point.seed)
    np.random.seed(point.seed)
    # data: decode (cached), split, keep the labelled subset, then corrupt its (and validation's) labels
    data = load_dataset(spec, point.dataset, data_cache)
    splits = trial_splits(spec, data, point)
    labels, noise = corrupt(spec, data, splits, point)
    # model: the stage-1 encoder and the entry's head; the fixed hyperparameters of the point's noise setting
    settings = [split_hparams(entry, entry.point_hparams(point.noise_kind, point.noise_rate, hp)) for hp in hparams]
    # inputs: the images, normalised as the encoder's initialisation expects and cut to the model's side;
    # or, for an algorithm on a frozen encoder's embeddings, those (computed once into the cache) and an
    # identity encoder, so that no pass of the trial runs the encoder
    crop, norm = spec.model.resolution, input_normalization(spec, point)
    augment = augmentation(spec, point)
    if ALGORITHMS[entry.algorithm].on_embeddings:
        inputs: Callable[[ImageData], np.ndarray] = point_embedder(spec, point, cache_dir, data_cache, device, owner)
        rows = inputs(data)
        encoder: torch.nn.Module = EmbeddingInput(rows.shape[1])
        torch.manual_seed(point.seed)
        crop, augment = None, None
    else:
        inputs, rows = image_rows, data.images
        encoder = build_encoder(spec, point, cache_dir, data_cache, device, owner)

    def model_maker() -> Callable[[], torch.nn.Module]:
        made: list[torch.nn.Module] = []  # one algorithm's networks

        def make_model() -> torch.nn.Module:
            # an algorithm's second network (Co-teaching, DivideMix) starts from the same encoder, except at
            # random init, where each network has its own draw, as the papers' independently initialised nets
            start = encoder if not made or not random_init(spec, point) else random_twin(spec, data, point, len(made))
            made.append(start)
            return Classifier(
                copy.deepcopy(start), data.num_classes, tuple(entry.head.hidden), frozen=entry.head.frozen
            )

        return make_model

    # loaders: the training split with its noisy labels, random crops and the spec's augmentation (one per
    # batch size); noisy validation centre-cropped; held on the device when both fit its budget, else in
    # host memory
    train_rows, val_rows = rows[splits.train], rows[splits.val]  # copies: taken once, shared by the loaders
    on_device = data_on_device(spec, train_rows.nbytes + val_rows.nbytes, device)
    trains: dict[int, TensorLoader] = {}
    for batch in dict.fromkeys(b for _, b, _ in settings):
        trains[batch] = TensorLoader(
            train_rows,
            labels[splits.train],
            batch,
            shuffle=True,
            augment_cfg=augment,
            device=device,
            seed=point.seed,
            indices=splits.train,
            channels_last=on_gpu,
            crop=crop,
            random_crop=True,
            norm=norm,
            on_device=on_device,
        )
    val = TensorLoader(
        val_rows,
        labels[splits.val],
        EVAL_BATCH,
        device=device,
        channels_last=on_gpu,
        crop=crop,
        norm=norm,
        on_device=on_device,
    )
    expected_noise = expected_noise_fraction(
        noise.transition, class_priors(data.labels, splits.train, data.num_classes)
    )
    # algorithms: each member's networks drawn from the generators' state before the first member's
    rng = torch.get_rng_state(), np.random.get_state()
    cuda_rng = torch.cuda.get_rng_state(device) if on_gpu else None
    trials = []
    for optim, batch, own in settings:
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        if cuda_rng is not None:
            torch.cuda.set_rng_state(cuda_rng, device)
        algo = ALGORITHMS[entry.algorithm](
            model_maker(),
            data.num_classes,
            len(data),
            optim,
            device,
            noise_rate=point.noise_rate,
            expected_noise=expected_noise,
            amp=on_gpu,
            seed=point.seed,
            **own,
        )
        if on_gpu:
            for net in algo.nets:
                net.to(memory_format=torch.channels_last)
        trials.append(Trial(spec, point, data, splits, labels, noise, algo, trains[batch], val, device, inputs))
    return trials


__all__ = [
    "Trial",
    "build_pack",
    "build_trial",
    "corrupt",
    "dataset_options",
    "input_normalization",
    "load_dataset",
    "noise_options",
    "pretrain_request",
    "split_hparams",
    "trial_splits",
]
