"""Stage 1: self-supervised pretraining of encoders, cached by content.

``METHODS[name]`` is the class of an SSL method (one file each, a shared base in ``base.py``);
``pretrain(PretrainRequest(...), cache_dir)`` reuses or trains the encoder and returns its checkpoint path;
``load_encoder(path)`` rebuilds the backbone from it. A pretraining job is keyed by everything that changes
its result; a second request for the same key reuses the stored encoder, and a file lock makes sure two
concurrent requests never both train it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from filelock import FileLock
from torch import nn

from study.data import ImageData, get_dataset, make_splits
from study.data.cache import hash_key
from study.data.pipeline import normalization
from study.errors import NonFiniteLossError
from study.models import RESNET_FEATURES, build_backbone, check_backbone
from study.models.timm_encoders import is_timm
from study.registry import Registry
from study.ssl.barlow_twins import BarlowTwins
from study.ssl.base import SSLMethod, feature_dim, knn_eval, train_ssl
from study.ssl.bigbigan import BigBiGAN
from study.ssl.init import (
    ImageNetInit,
    PretrainedInit,
    RandomInit,
    WeightsInit,
    file_sha256,
    find_imagenet_weights,
    start_backbone,
)
from study.ssl.jigmag import JigMag
from study.ssl.jigsaw import Jigsaw
from study.ssl.micle import MICLe
from study.ssl.moco_v2 import MoCoV2
from study.ssl.rotation import Rotation
from study.ssl.simclr import SimCLR
from study.ssl.vae import VAE

#: bump when a change to the methods makes old cached encoders stale
SSL_VERSION = (
    3  # 2: Barlow Twins' learning rates scale with the batch size; 3: ImageNet inits see ImageNet's normalisation
)
CHECKPOINT = "encoder.pt"
#: the named initialisations; ``WeightsInit`` (a local file) is the third form
INITS = ("random", "imagenet")

METHODS: Registry[type[SSLMethod]] = Registry("ssl method")
for _cls in (
    RandomInit,
    ImageNetInit,
    PretrainedInit,
    SimCLR,
    MoCoV2,
    BarlowTwins,
    Rotation,
    Jigsaw,
    JigMag,
    VAE,
    BigBiGAN,
    MICLe,
):
    METHODS.register(_cls.name, _cls)


def check_init(method: str, init: str | WeightsInit, backbone: str) -> None:
    """The (method, init, backbone) combinations that exist; a ValueError naming the fix otherwise."""
    if isinstance(init, str) and init not in INITS:
        raise ValueError(f"ssl init must be one of {', '.join(INITS)} or a WeightsInit (a local file), got {init!r}")
    if method == "random" and init != "random":
        raise ValueError(f"method 'random' with this init is method {_init_method(init)!r}; use that method")
    if method == "pretrained" and not isinstance(init, WeightsInit):
        raise ValueError("ssl method 'pretrained' needs init {weights: PATH} (the file that is the encoder)")
    if method == "imagenet" and init != "random" and init != "imagenet":
        raise ValueError("ssl method 'imagenet' reads torchvision's ResNet-18 file; for another file use 'pretrained'")
    if (method == "imagenet" or init == "imagenet") and backbone != "resnet18":
        raise ValueError(f"ImageNet weights exist for backbone 'resnet18' only, got {backbone!r}")
    if isinstance(init, WeightsInit):
        check_weights_backbone(init, backbone)


def check_weights_backbone(init: WeightsInit, backbone: str) -> None:
    """A weight file's format (and ``inputs: model``) against the backbone: torchvision files fit torchvision
    ResNets, timm files ``timm:`` backbones; a ValueError naming the field to change otherwise."""
    if init.format == "timm" and not is_timm(backbone):
        raise ValueError(
            f"a weight file in timm's format (init.format: timm) needs model.backbone: timm:<architecture> (the "
            f"architecture the file was saved from, e.g. timm:vit_base_patch16_224), not {backbone!r}"
        )
    if init.format == "torchvision" and backbone not in RESNET_FEATURES:
        timm_hint = "; for a timm backbone's file set init.format: timm" if is_timm(backbone) else ""
        raise ValueError(
            f"a weight file in torchvision's format fits a torchvision ResNet ({', '.join(RESNET_FEATURES)}), "
            f"not backbone {backbone!r}{timm_hint}"
        )
    if init.inputs == "model" and not is_timm(backbone):
        raise ValueError(
            "init.inputs: model reads the mean and std of a timm backbone's pretrained_cfg; for backbone "
            f"{backbone!r} set inputs: imagenet, unit or standard"
        )


def _init_method(init: str | WeightsInit) -> str:
    return "pretrained" if isinstance(init, WeightsInit) else str(init)


def weights_file(request: PretrainRequest, imagenet_weights: str | Path | None = None) -> Path | None:
    """The weight file the request's encoder starts from (None for a random start); nothing is downloaded."""
    init = request.effective_init
    if init == "imagenet":
        return find_imagenet_weights(imagenet_weights)
    if isinstance(init, WeightsInit):
        if not init.path.is_file():
            raise FileNotFoundError(f"{init.path}: no such weight file (ssl init.weights; docs/weights.md)")
        return init.path
    return None


@dataclass(frozen=True, eq=False)
class PretrainRequest:
    """One pretraining job. ``init`` is the starting point of an SSL method ('imagenet' + an SSL method is
    the papers' "ImageNet + SSL"; a ``WeightsInit`` starts from a local torchvision-ResNet file, Azizi et
    al.'s SimCLR-on-ImageNet encoder); the ``random``, ``imagenet`` and ``pretrained`` methods train nothing,
    so their keys ignore epochs, batch size and hyperparameters (``pretrained`` is its ``init`` file).
    ``val_fraction``/``test_fraction`` are the split's (as ``make_splits``):
    SSL trains on the training split only, and reports kNN accuracy on the validation split."""

    dataset: str
    dataset_options: dict[str, Any]
    split_seed: int
    method: str
    hparams: dict[str, Any]
    backbone: str
    resolution: int | None
    epochs: int
    init: str | WeightsInit
    seed: int
    batch_size: int = 256
    val_fraction: float = 0.1
    test_fraction: float = 0.2

    def __post_init__(self) -> None:
        cls = METHODS[self.method]  # unknown names fail with the choices
        check_backbone(self.backbone)
        check_init(self.method, self.init, self.backbone)
        if cls.trains and self.epochs < 1:
            raise ValueError(f"ssl method {self.method!r}: epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2, got {self.batch_size}")
        cls.resolve_hparams(self.hparams)  # unknown hyperparameters fail here, with the valid names

    @property
    def effective_init(self) -> str | WeightsInit:
        return "imagenet" if self.method == "imagenet" else self.init

    def resolved(self) -> dict[str, Any]:
        """Everything that changes the result, with the method's defaults filled in."""
        cls = METHODS[self.method]
        out = asdict(self)
        out["hparams"] = cls.resolve_hparams(self.hparams)
        init = self.effective_init
        out["init"] = init.model_dump() if isinstance(init, WeightsInit) else init
        if not cls.trains:  # nothing is trained: these do not change the encoder
            out.update(epochs=0, batch_size=0, hparams={})
        return out

    def key(self) -> str:
        return hash_key({"ssl_version": SSL_VERSION, **self.resolved()})

    def __hash__(self) -> int:
        return hash(self.key())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PretrainRequest) and self.key() == other.key()


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pretrain(
    request: PretrainRequest,
    cache_dir: str | Path,
    device: str | torch.device | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
    data_cache_dir: str | Path | None = None,
    imagenet_weights: str | Path | None = None,
    knn_bank_size: int = 10000,
    owner: str | None = None,
    device_budget: int | None = None,
) -> Path:
    """The encoder checkpoint for ``request``: reused from ``cache_dir`` when its key is there, else trained
    and stored (under a file lock: a concurrent request for the same key waits and then reuses it).

    The entry is ``<cache_dir>/ssl/<key>/`` with ``encoder.pt`` (backbone weights and metadata),
    ``meta.json`` and ``history.json`` (per-epoch ``ssl_loss``, ``knn_acc``, ``epoch_seconds``); its key
    combines ``request.key()`` with the decoded dataset's content key, so changed source files retrain.
    ``on_epoch(epoch, metrics)`` is called after each trained epoch (not on reuse). ``device_budget``: bytes
    the training images may take on ``device``; larger sets stay in host memory and move batch by batch
    (the same batches and encoder; None: always on the device).

    ``cache_dir`` may be an ``s3://``/``gs://`` URI (``study.storage``): the entry is then looked up in the
    bucket and downloaded to this node's mirror of the cache (``storage.local_mirror``), and the returned
    path is that local copy. Training on an object store is guarded by a claim object
    ``<cache_dir>/ssl/<key>.claim`` (``storage.Claim``: other nodes wait for the encoder instead of
    training it again; best effort) written by ``owner`` (a Ray trial id keeps its claim across retries),
    and ``encoder.pt`` is uploaded last, so its presence means the entry is complete. Decoded datasets
    stay node-local (``data_cache_dir``, default this node's cache): each node decodes its source files.
    """
    from study import storage

    device = torch.device(device) if device is not None else default_device()
    remote = str(cache_dir) if storage.is_uri(cache_dir) else None
    local_cache = storage.local_mirror(remote) if remote else Path(cache_dir).expanduser()
    if data_cache_dir is None:
        data_cache_dir = storage.node_data_cache(None) if remote else local_cache
    opts = dict(request.dataset_options)
    if request.resolution is not None:
        opts["resolution"] = request.resolution
    data = get_dataset(request.dataset, **opts).load(data_cache_dir)
    start = weights_file(request, imagenet_weights)
    # a replaced weight file is a new encoder: the entry's key holds the file's content hash
    weights = {"weights_sha256": file_sha256(start)} if start is not None else {}
    key = hash_key({"request": request.key(), "data": data.cache_key, **weights})
    root = local_cache / "ssl"
    root.mkdir(parents=True, exist_ok=True)
    entry = root / key
    with FileLock(str(root / f"{key}.lock")):  # one process per node (or per NFS cache) at a time
        if (entry / CHECKPOINT).is_file():
            return entry / CHECKPOINT
        claim = None
        if remote:
            remote_entry = storage.join(remote, "ssl", key)
            if _fetch_entry(remote_entry, entry):
                return entry / CHECKPOINT
            claim = storage.Claim(storage.join(remote, "ssl", f"{key}.claim"), owner)
            poll = float(os.environ.get("STUDY_CLAIM_POLL_S", 5))
            while not claim.acquire():  # another node trains it: wait for its encoder (or its claim to go stale)
                time.sleep(poll)
                if _fetch_entry(remote_entry, entry):
                    return entry / CHECKPOINT
            if _fetch_entry(remote_entry, entry):  # finished between our last look and the claim
                claim.release()
                return entry / CHECKPOINT
            user_on_epoch = on_epoch

            def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
                claim.heartbeat()
                if user_on_epoch is not None:
                    user_on_epoch(epoch, metrics)

        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=root))
        try:
            _train_entry(request, data, tmp, device, on_epoch, start, knn_bank_size, key, device_budget)
            if remote:
                storage.upload_dir(tmp, remote_entry, last=CHECKPOINT)
            if entry.exists():  # an incomplete entry left by a crash
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
            if claim is not None:
                claim.release()
    return entry / CHECKPOINT


def _fetch_entry(remote_entry: str, entry: Path) -> bool:
    """Download a complete cache entry (one whose ``encoder.pt`` is stored) from the object store."""
    from study import storage

    if not storage.is_file(storage.join(remote_entry, CHECKPOINT)):
        return False
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-dl-", dir=entry.parent))
    try:
        for name in storage.list_files(remote_entry):
            if name != CHECKPOINT:
                storage.download_file(storage.join(remote_entry, name), tmp / name)
        storage.download_file(storage.join(remote_entry, CHECKPOINT), tmp / CHECKPOINT)
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return True


def _train_entry(
    request: PretrainRequest,
    data: ImageData,
    folder: Path,
    device: torch.device,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
    start: Path | None,
    knn_bank_size: int,
    key: str,
    device_budget: int | None = None,
) -> None:
    cls = METHODS[request.method]
    hp = cls.resolve_hparams(request.hparams)
    init = request.effective_init
    splits = make_splits(data, request.val_fraction, request.test_fraction, seed=request.split_seed)
    train_idx = splits.train
    train_images = np.ascontiguousarray(data.images[train_idx])
    patients = None if data.patient_ids is None else np.asarray(data.patient_ids)[train_idx]
    # the kNN monitor: a seeded subset of the training split (clean labels) as the bank, validation as queries
    rng = np.random.default_rng(request.seed)
    bank = np.sort(rng.permutation(len(train_idx))[:knn_bank_size])
    knn = (
        (
            train_images[bank],
            data.labels[train_idx][bank],
            np.ascontiguousarray(data.images[splits.val]),
            data.labels[splits.val],
        )
        if len(splits.val)
        else None
    )

    # the backbone: seeded initialisation, then the weight file where asked (ImageNet stem at any size; a
    # timm network fitted to the trial's input side, which its position embeddings depend on)
    image_size, channels = data.resolution, data.channels
    build_size = _build_size(request, image_size, start is not None)
    torch.manual_seed(request.seed)
    if start is None:
        backbone = build_backbone(request.backbone, channels, build_size)
    else:
        backbone = start_backbone(request.backbone, channels, build_size, start, init)

    history: list[dict[str, float]] = []
    if cls.trains:
        method = cls(backbone, channels, image_size, **hp)
        history = train_ssl(
            method,
            train_images,
            request.epochs,
            request.batch_size,
            device,
            request.seed,
            knn=knn,
            patient_ids=patients,
            on_epoch=on_epoch,
            norm=normalization(init, request.backbone),
            on_device=device_budget is None or train_images.nbytes <= device_budget,
        )
        backbone = method.backbone
    final_knn = (
        history[-1]["knn_acc"]
        if history and "knn_acc" in history[-1]
        else (
            knn_eval(backbone.to(device), knn, device, normalization(init, request.backbone))
            if knn is not None
            else float("nan")
        )
    )
    meta = {
        "key": key,
        "request_key": request.key(),
        "request": request.resolved(),
        "data_key": data.cache_key,
        "backbone": request.backbone,
        "in_channels": channels,
        "image_size": image_size,
        "build_size": build_size,
        "feature_dim": feature_dim(backbone),
        "method": request.method,
        "init": init.model_dump() if isinstance(init, WeightsInit) else init,
        "imagenet_weights": None if start is None else str(start),  # the start file, under its older name
        "weights_file": None if start is None else str(start),
        "weights_sha256": None if start is None else file_sha256(start),
        "epochs_trained": len(history),
        "knn_acc": float(final_knn),
        "ssl_version": SSL_VERSION,
    }
    state = {k: v.detach().cpu().clone() for k, v in backbone.state_dict().items()}
    torch.save({"state_dict": state, "meta": json.loads(json.dumps(meta, default=str))}, folder / CHECKPOINT)
    (folder / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    (folder / "history.json").write_text(json.dumps(history, indent=1))


def _build_size(request: PretrainRequest, stored: int, from_file: bool) -> int:
    """The input side the stage-1 backbone is built for: for a timm backbone the network's input side
    (``model.resolution``, else the stored side), which ViT position embeddings depend on; from a torchvision
    file at least 96 px (the ImageNet stem the file was trained with); else the stored side."""
    if is_timm(request.backbone):
        return request.resolution or stored
    return max(stored, 96) if from_file else stored


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata stored in an encoder checkpoint."""
    meta: dict[str, Any] = torch.load(Path(path), map_location="cpu", weights_only=True)["meta"]
    return meta


def read_history(path: str | Path) -> list[dict[str, float]]:
    """Per-epoch metrics of the job that trained the encoder at ``path`` (empty for untrained inits)."""
    history: list[dict[str, float]] = json.loads((Path(path).parent / "history.json").read_text())
    return history


def load_encoder(path: str | Path, device: str | torch.device | None = None) -> nn.Module:
    """The backbone stored at ``path`` (``torch.load(weights_only=True)``), rebuilt from its metadata, in
    evaluation mode, on ``device`` (CPU by default). Its metadata is attached as ``ssl_meta``."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    meta = ckpt["meta"]
    backbone = build_backbone(meta["backbone"], meta["in_channels"], meta["build_size"])
    backbone.load_state_dict(ckpt["state_dict"])
    backbone.ssl_meta = meta
    return backbone.to(torch.device(device) if device is not None else "cpu").eval()


__all__ = [
    "METHODS",
    "NonFiniteLossError",
    "PretrainRequest",
    "SSLMethod",
    "WeightsInit",
    "load_encoder",
    "pretrain",
    "read_history",
    "read_meta",
]
