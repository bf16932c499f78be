"""Heads on frozen embeddings (Dedieu et al. 2024, arXiv 2404.07605): the stage-1 encoder is frozen, its
embeddings are computed once per (encoder file, dataset, input preprocessing) and cached, and a small MLP
head (default 512-128-64) or a linear head is trained on noisy labels, optionally with Gaussian noise added
to the features.

Because the encoder is frozen, many heads (noise configurations x seeds) share one embedding matrix:
``train_heads`` trains H heads at once with grouped weights (one H x D_in x D_out tensor per layer and
batched matmuls), each head with its own labels, initialisation and mini-batch order. Weight decay,
momentum and the loss are per element or summed over heads, so this is exactly H independent trainings.

``LinearProbe`` is the same model behind the ``Algorithm`` interface (registered as ``linear_probe``). It
declares ``on_embeddings``: a study trial (``study.experiment.build_trial``) gives it the cached embeddings
of every split as its inputs and an identity encoder (``EmbeddingInput``), so its training, validation and
test passes run no encoder at all, and only the first trial of an (encoder, dataset, preprocessing) runs the
encoder, once over the whole dataset. Given image loaders and a real encoder instead (the algorithm tests),
it embeds the training set once on its first epoch.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from filelock import FileLock
from pydantic import Field
from torch import nn

from study import hparams
from study.data.base import ImageData
from study.data.pipeline import STANDARD, Normalization, TensorLoader, center_crop, to_float
from study.lnl.base import Algorithm, TrainViews
from study.metrics import macro_f1_batched
from study.models import Classifier, mlp_head
from study.packing import elapsed

DEFAULT_HIDDEN = (512, 128, 64)


# -- embeddings and their cache
@torch.no_grad()
def embed(
    encoder: nn.Module,
    images: np.ndarray,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    crop: int | None = None,
    norm: Normalization = STANDARD,
) -> np.ndarray:
    """Embeddings (N x D float32) of uint8 images (N x H x W x C) under ``encoder`` in eval mode, each image
    normalised with ``norm`` and cut to its central ``crop`` window (an evaluation loader's input side)."""
    encoder.eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = to_float(
            torch.from_numpy(np.array(images[i : i + batch_size])).to(device), norm
        )  # a copy: memmaps are read-only
        out.append(encoder(x if crop is None else center_crop(x, crop)).float().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def preprocessing_key(crop: int | None, norm: Normalization) -> str:
    """A short key of the input preprocessing under which embeddings were computed (crop side, mean, std)."""
    text = json.dumps({"crop": crop, "mean": list(norm.mean), "std": list(norm.std)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def file_hash(path: str | Path) -> str:
    """SHA-256 (first 24 hex digits) of a file's bytes: the identity of a stored encoder."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:24]


def cached_embeddings(
    cache_dir: str | Path, encoder_hash: str, dataset_key: str, compute: Callable[[], np.ndarray]
) -> np.ndarray:
    """Embeddings of a whole dataset, from ``<cache>/embeddings/<encoder_hash>-<dataset_key>.npy`` or computed.

    ``compute()`` runs only on a miss, under the entry's file lock (concurrent trials of one node, or of one
    NFS cache, wait for the first and then read its file); the file is written atomically (temporary name,
    then rename).
    """
    root = Path(cache_dir).expanduser() / "embeddings"
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{encoder_hash}-{dataset_key}.npy"
    if not path.exists():
        with FileLock(str(path.with_suffix(".lock"))):
            if not path.exists():
                emb = np.asarray(compute(), dtype=np.float32)
                tmp = path.with_suffix(f".tmp{np.random.randint(1 << 30)}.npy")
                np.save(tmp, emb)
                tmp.replace(path)
    cached: np.ndarray = np.load(path, mmap_mode="r")
    return cached


def embeddings_dataset_key(data: ImageData, crop: int | None, norm: Normalization) -> str:
    """The dataset half of an embeddings file's key: the dataset's cache key and the preprocessing (the
    file is ``embeddings/<encoder file hash>-<this>.npy``)."""
    if not data.cache_key:
        raise ValueError("encoder_embeddings: the dataset has no cache key (load it through the cache)")
    return f"{data.cache_key}-{preprocessing_key(crop, norm)}"


def encoder_embeddings(
    encoder: nn.Module | Callable[[], nn.Module],
    encoder_path: str | Path,
    data: ImageData,
    cache_dir: str | Path,
    device: str | torch.device = "cpu",
    batch_size: int = 512,
    crop: int | None = None,
    norm: Normalization = STANDARD,
    encoder_hash: str | None = None,
) -> np.ndarray:
    """Embeddings (N x D) of every image of ``data`` (an ``ImageData``) under a stored stage-1 encoder,
    cached by (hash of the encoder file, the dataset's cache key, the preprocessing: ``crop`` and ``norm``);
    index the rows with the splits. ``encoder``: the encoder, or a function that loads it (called only when
    the embeddings are not in the cache); ``encoder_hash``: ``file_hash(encoder_path)`` where the caller
    has it already (hashing a foundation encoder's file reads hundreds of MB)."""
    return cached_embeddings(
        cache_dir,
        encoder_hash or file_hash(encoder_path),
        embeddings_dataset_key(data, crop, norm),
        lambda: embed(
            (encoder if isinstance(encoder, nn.Module) else encoder()).to(device),
            data.images,
            batch_size,
            device,
            crop,
            norm,
        ),
    )


class EmbeddingInput(nn.Identity):
    """The encoder of a model whose inputs are already embeddings (D wide): passes them through."""

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.feature_dim = feature_dim


# -- H heads trained together
class HeadGroup(nn.Module):
    """H independent MLP heads as grouped weights: layer l holds an H x D_l x D_{l+1} tensor."""

    def __init__(
        self,
        num_heads: int,
        in_dim: int,
        num_classes: int,
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        seeds: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden, num_classes]
        seeds = list(seeds) if seeds is not None else list(range(num_heads))
        self.weights, self.biases = nn.ParameterList(), nn.ParameterList()
        for a, b in itertools.pairwise(dims):
            w, bias = torch.empty(num_heads, a, b), torch.empty(num_heads, 1, b)
            for h in range(num_heads):  # nn.Linear's default init, per head from its own seed
                g = torch.Generator().manual_seed(int(seeds[h]) * 7919 + a * 31 + b)
                bound = 1.0 / math.sqrt(a)
                w[h].uniform_(-bound, bound, generator=g)
                bias[h].uniform_(-bound, bound, generator=g)
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: H x B x D_in (or B x D_in, shared by all heads) -> H x B x K logits."""
        if x.dim() == 2:
            x = x.expand(self.weights[0].shape[0], *x.shape)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = torch.baddbmm(b, x, w)
            if i < len(self.weights) - 1:
                x = F.relu(x)
        return x


@dataclass
class HeadsResult:
    """Per head: the best epoch by noisy-validation macro-F1, its F1, the head weights of that epoch and the
    last epoch it trained (its patience ran out there, or the epochs did)."""

    best_epoch: np.ndarray
    best_val_f1: np.ndarray
    state: dict[str, torch.Tensor]
    history: list[dict[str, Any]] = field(default_factory=list)
    hidden: tuple[int, ...] = DEFAULT_HIDDEN
    last_epoch: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    #: how the heads were trained: "batched" (one grouped model) or "sequential" (one head at a time)
    execution: str = "batched"

    def model(self) -> HeadGroup:
        w = self.state["weights.0"]
        k = self.state[f"weights.{len(self.hidden)}"].shape[2]
        g = HeadGroup(w.shape[0], w.shape[1], k, self.hidden)
        g.load_state_dict(self.state)
        return g


@torch.no_grad()
def predict_heads(heads: HeadGroup, embeddings: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Class probabilities H x N x K of every head on shared embeddings (N x D)."""
    out = [torch.softmax(heads(embeddings[i : i + batch_size]), dim=2) for i in range(0, len(embeddings), batch_size)]
    return torch.cat(out, dim=1)


Execution = Literal["auto", "batched", "sequential"]


def train_heads(
    embeddings_train: np.ndarray | torch.Tensor,
    noisy_label_sets: np.ndarray | torch.Tensor,
    embeddings_val: np.ndarray | torch.Tensor,
    val_label_sets: np.ndarray | torch.Tensor,
    num_classes: int,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    epochs: int = 300,
    lr: float = 0.025,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    batch_size: int = 512,
    feature_noise: float | Sequence[float] = 0.0,
    patience: int | None = 20,
    seeds: Sequence[int] | None = None,
    device: str | torch.device = "cpu",
    execution: Execution = "auto",
) -> HeadsResult:
    """Train H heads on one embedding matrix; select each head's epoch by its noisy-val macro-F1.

    ``noisy_label_sets``: H x N (head h trains on labels ``[h]``); ``val_label_sets``: H x N_val.
    ``feature_noise``: Gaussian sigma added to the training features (one value, or one per head).
    ``patience``: a head stops when its validation F1 has not improved for this many epochs (None: never);
    training ends when every head has stopped.
    ``execution``: "batched" trains the heads as one grouped model, "sequential" one after another, "auto"
    whichever ``batching_pays`` measured faster on this device for these shapes. Each head has its own
    initialisation, data order, feature noise and patience, so the three give the same heads.
    Defaults follow Dedieu et al.: SGD lr 0.025, batch 512, 300 epochs, patience 20.
    """
    dev = torch.device(device)
    xt = torch.as_tensor(np.asarray(embeddings_train), dtype=torch.float32, device=dev)  # N x D
    xv = torch.as_tensor(np.asarray(embeddings_val), dtype=torch.float32, device=dev)  # Nv x D
    yt = torch.as_tensor(np.asarray(noisy_label_sets), dtype=torch.long, device=dev)  # H x N
    yv = torch.as_tensor(np.asarray(val_label_sets), dtype=torch.long, device=dev)  # H x Nv
    if yt.dim() != 2 or yt.shape[1] != xt.shape[0]:
        raise ValueError(f"noisy_label_sets must be H x {xt.shape[0]}, got {tuple(yt.shape)}")
    if yv.shape != (yt.shape[0], xv.shape[0]):
        raise ValueError(f"val_label_sets must be {yt.shape[0]} x {xv.shape[0]}, got {tuple(yv.shape)}")
    h = yt.shape[0]
    seeds = list(seeds) if seeds is not None else list(range(h))
    sigmas = np.broadcast_to(np.asarray(feature_noise, dtype=np.float32), (h,)).copy()
    opts = HeadOptions(tuple(hidden), epochs, lr, momentum, weight_decay, batch_size, patience, num_classes)
    if execution == "auto":
        pays = batching_pays(h, xt.shape[1], opts.hidden, batch_size, num_classes, dev)
        execution = "batched" if pays else "sequential"
    if execution == "batched" or h == 1:
        return _train_group(xt, yt, xv, yv, sigmas, seeds, opts, dev)
    alone = [
        _train_group(xt, yt[i : i + 1], xv, yv[i : i + 1], sigmas[i : i + 1], seeds[i : i + 1], opts, dev)
        for i in range(h)
    ]
    return _stack(alone, opts)


@dataclass(frozen=True)
class HeadOptions:
    """The training settings every head of a ``train_heads`` call shares."""

    hidden: tuple[int, ...]
    epochs: int
    lr: float
    momentum: float
    weight_decay: float
    batch_size: int
    patience: int | None
    num_classes: int


def _train_group(
    xt: torch.Tensor,
    yt: torch.Tensor,
    xv: torch.Tensor,
    yv: torch.Tensor,
    sigmas: np.ndarray,
    seeds: Sequence[int],
    o: HeadOptions,
    dev: torch.device,
    max_steps: int | None = None,
) -> HeadsResult:
    """The heads of ``yt`` as one grouped model (``max_steps``: stop after that many steps, for timing).
    A head whose patience runs out leaves the group: the others train on without it (``_compact``)."""
    h, n = yt.shape
    sigma = torch.as_tensor(sigmas, device=dev)[:, None, None]  # H x 1 x 1
    heads = HeadGroup(h, xt.shape[1], o.num_classes, o.hidden, seeds).to(dev)
    opt = _sgd(heads, o)
    gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
    noise_gens = [torch.Generator(device=dev).manual_seed(int(s) + 1) for s in seeds]  # each head its own
    best_f1 = torch.full((h,), -1.0)
    best_epoch, last_epoch, stale = np.full(h, -1), np.full(h, -1), np.zeros(h, dtype=int)
    best_state = {k: v.detach().clone() for k, v in heads.state_dict().items()}
    live = np.arange(h)  # the head of each row of the group (a stopped head's row is dropped)
    history: list[dict[str, Any]] = []
    steps, done = math.ceil(n / o.batch_size), 0
    for epoch in range(o.epochs):
        # each head its own order of the training rows: H x N
        order = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(dev)
        losses = torch.zeros(len(live), device=dev)
        for s in range(steps):
            rows = order[:, s * o.batch_size : (s + 1) * o.batch_size]  # H x B
            x = xt[rows]  # H x B x D
            if bool((sigma > 0).any()):
                x = x + sigma * torch.stack([torch.randn(x.shape[1:], generator=g, device=dev) for g in noise_gens])
            logits = heads(x)  # H x B x K
            y = torch.gather(yt, 1, rows)  # H x B
            # the sum of per-head mean losses: each head's gradient is its own
            per_head = F.cross_entropy(logits.reshape(-1, o.num_classes), y.reshape(-1), reduction="none")
            per_head = per_head.view(len(live), -1).mean(1)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(per_head.sum())
            opt.step()
            losses += per_head.detach()
            done += 1
            if max_steps is not None and done >= max_steps:
                return HeadsResult(best_epoch, best_f1.numpy(), best_state, history, o.hidden, last_epoch)
        loss = (losses / steps).cpu().numpy()
        if not np.isfinite(loss).all():
            raise FloatingPointError(f"train_heads: non-finite loss at epoch {epoch}")
        f1 = macro_f1_batched(yv, predict_heads(heads, xv).argmax(2), o.num_classes).cpu()  # per row
        improved = (f1 > best_f1[live]).numpy()
        if improved.any():
            for k, v in heads.state_dict().items():
                best_state[k][torch.as_tensor(live[improved], device=v.device)] = v.detach()[torch.from_numpy(improved)]
            best_f1[live[improved]] = f1[torch.from_numpy(improved)]
            best_epoch[live[improved]] = epoch
        stale[live] = np.where(improved, 0, stale[live] + 1)
        last_epoch[live] = epoch
        history.append({"epoch": epoch, **_rows_to_heads(h, live, train_loss=loss, val_f1=f1.numpy())})
        keep = stale[live] < o.patience if o.patience is not None else np.ones(len(live), dtype=bool)
        if not keep.any():
            break
        if not keep.all():  # stopped heads leave the group: their best epoch and weights no longer change
            index = torch.as_tensor(np.flatnonzero(keep), device=dev)
            opt = _compact(heads, opt, index, o)
            yt, yv, sigma, live = yt[index], yv[index], sigma[index], live[keep]
            gens = [g for g, k in zip(gens, keep) if k]
            noise_gens = [g for g, k in zip(noise_gens, keep) if k]
    return HeadsResult(best_epoch, best_f1.numpy(), best_state, history, o.hidden, last_epoch)


def _sgd(heads: HeadGroup, o: HeadOptions) -> torch.optim.SGD:
    return torch.optim.SGD(heads.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def _compact(heads: HeadGroup, opt: torch.optim.SGD, index: torch.Tensor, o: HeadOptions) -> torch.optim.SGD:
    """Keep only the heads ``index`` of the group, with their momentum buffers; the new optimiser."""
    buffers: list[tuple[nn.Parameter, torch.Tensor | None]] = []
    for params in (heads.weights, heads.biases):
        for i, p in enumerate(params):
            buf = opt.state[p].get("momentum_buffer") if p in opt.state else None
            kept = nn.Parameter(p.detach()[index].clone())
            params[i] = kept
            buffers.append((kept, None if buf is None else buf[index].clone()))
    new = _sgd(heads, o)
    for p, buf in buffers:
        if buf is not None:
            new.state[p]["momentum_buffer"] = buf
    return new


def _rows_to_heads(h: int, live: np.ndarray, **per_row: np.ndarray) -> dict[str, list[float | None]]:
    """Per-row values as lists over all ``h`` heads (None for heads no longer in the group)."""
    out: dict[str, list[float | None]] = {}
    for key, values in per_row.items():
        full: list[float | None] = [None] * h
        for row, head in enumerate(live):
            full[int(head)] = float(values[row])
        out[key] = full
    return out


def _stack(alone: list[HeadsResult], o: HeadOptions) -> HeadsResult:
    """Heads trained one at a time, as one result (the same layout as a batched one)."""
    epochs = max(len(r.history) for r in alone)
    history = [
        {
            "epoch": e,
            **{
                key: [r.history[e][key][0] if e < len(r.history) else None for r in alone]
                for key in ("train_loss", "val_f1")
            },
        }
        for e in range(epochs)
    ]
    return HeadsResult(
        best_epoch=np.concatenate([r.best_epoch for r in alone]),
        best_val_f1=np.concatenate([r.best_val_f1 for r in alone]),
        state={k: torch.cat([r.state[k] for r in alone]) for k in alone[0].state},
        history=history,
        hidden=o.hidden,
        last_epoch=np.concatenate([r.last_epoch for r in alone]),
        execution="sequential",
    )


#: measured choices of ``batching_pays``: (device, threads, heads, shapes) -> batching is faster
_CROSSOVER: dict[tuple[Any, ...], bool] = {}
#: training steps timed per variant (after one warm-up step each)
PROBE_STEPS = 4


def batching_pays(
    heads: int, in_dim: int, hidden: Sequence[int], batch_size: int, num_classes: int, device: torch.device
) -> bool:
    """Whether training ``heads`` heads as one grouped model is faster, on ``device``, than training them
    one after another: both are timed for ``PROBE_STEPS`` steps on random embeddings of the real shapes
    (after a warm-up step each), once per (device, threads, shapes) in this process; the probe costs
    about 0.1-0.2 s on 2 CPU cores for the paper's head. On a GPU one head leaves most of the device idle
    and batching wins; on a few CPU cores a grouped matmul need not beat H plain ones."""
    if heads <= 1:
        return False
    key = (str(device), torch.get_num_threads(), heads, in_dim, tuple(hidden), batch_size, num_classes)
    if key not in _CROSSOVER:
        n = batch_size * (PROBE_STEPS + 1)
        gen = torch.Generator().manual_seed(0)
        xt = torch.randn(n, in_dim, generator=gen).to(device)
        xv = xt[:batch_size]
        yt = torch.randint(0, num_classes, (heads, n), generator=gen).to(device)
        yv = yt[:, :batch_size]
        sig = np.zeros(heads, dtype=np.float32)
        probe = HeadOptions(tuple(hidden), 1, 0.01, 0.9, 0.0, batch_size, None, num_classes)

        def timed(label_sets: torch.Tensor, val_sets: torch.Tensor, s: np.ndarray) -> float:
            seeds = list(range(len(s)))
            _train_group(xt, label_sets, xv, val_sets, s, seeds, probe, device, max_steps=1)
            return elapsed(
                device,
                lambda: _train_group(xt, label_sets, xv, val_sets, s, seeds, probe, device, max_steps=PROBE_STEPS),
            )

        together = timed(yt, yv, sig)
        alone = timed(yt[:1], yv[:1], sig[:1]) * heads
        _CROSSOVER[key] = together <= alone
    return _CROSSOVER[key]


# -- the Algorithm entry
def feature_dim(encoder: nn.Module) -> int:
    """The width of an encoder's embeddings (every backbone of ``study.models`` sets ``feature_dim``)."""
    dim = encoder.feature_dim
    if not isinstance(dim, int):
        raise TypeError(f"linear_probe: the encoder's feature_dim is {dim!r}, not an integer")
    return dim


class LinearProbe(Algorithm):
    """A frozen encoder and an MLP (``hidden``, default 512-128-64) or linear (``hidden=[]``) head.

    ``make_model`` must build a ``Classifier``; its encoder is frozen and its head replaced. Training
    embeds the training set once (no augmentation, as on cached embeddings) and trains on those rows,
    with Gaussian ``feature_noise`` added per step.
    """

    name = "linear_probe"
    #: not measured: heads on cached embeddings have no backbone step to compare (the embedding pass is
    #: charged once per dataset x encoder, not per trial)
    step_cost = 0.4
    on_embeddings = True
    #: a step forwards the head alone on the batch's embeddings (``train_inputs``, with this trial's own
    #: feature noise): the heads of a packed trial run as one batched call, as ``train_heads`` does
    packable = True

    class Hparams(hparams.Hparams):
        hidden: list[Annotated[int, Field(gt=0)]] = Field(
            list(DEFAULT_HIDDEN), description=("widths of the head's hidden layers; [] for a linear head")
        )
        feature_noise: float = Field(0.0, ge=0, description="sigma of Gaussian noise added to the embeddings")

    hp: Hparams

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.embeddings: torch.Tensor | None = None  # num_samples x D, rows by dataset index
        #: the feature noise's own generator, from the trial's seed: a packed member draws what its own
        #: trial draws, and a restored trial what the uninterrupted one would (``extra_state``)
        self.noise = torch.Generator(device=self.device).manual_seed(noise_seed(self.seed))

    @property
    def model(self) -> Classifier:
        model = self.nets[0]
        assert isinstance(model, Classifier)  # build_nets made it
        return model

    def build_nets(self, make_model: Callable[[], nn.Module]) -> list[nn.Module]:
        model = make_model()
        if not isinstance(model, Classifier):
            raise TypeError("linear_probe: make_model must return a study.models.Classifier")
        model.head = mlp_head(feature_dim(model.encoder), self.num_classes, tuple(self.hp.hidden))
        model.frozen = True
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        return [model.to(self.device)]

    def start_epoch(self, epoch: int, train: TensorLoader) -> None:
        super().start_epoch(epoch, train)
        if self.embeddings is None:
            encoder = self.model.encoder
            encoder.eval()
            emb = torch.zeros(self.num_samples, feature_dim(encoder), device=self.device)
            with torch.no_grad():
                for x, _, index in TrainViews(train, self.num_samples).plain_batches():
                    emb[index] = encoder(x).float()
            self.embeddings = emb

    @property
    def step_nets(self) -> list[nn.Module]:
        return [self.model.head]

    def train_inputs(self, x: torch.Tensor, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """The batch's rows of the training embeddings, with Gaussian ``feature_noise`` from this trial's own
        generator."""
        if self.embeddings is None:
            raise RuntimeError("linear_probe: train_step before start_epoch")
        feats = self.embeddings[index]  # B x D
        if self.hp.feature_noise > 0:
            draw = torch.randn(feats.shape, generator=self.noise, device=feats.device, dtype=feats.dtype)
            feats = feats + self.hp.feature_noise * draw
        return feats

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), y)

    def extra_state(self) -> dict[str, Any]:
        return {"noise": self.noise.get_state()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if "noise" in state:
            self.noise.set_state(state["noise"].cpu())


def noise_seed(seed: int) -> int:
    """The seed of a trial's feature-noise generator: its own stream of the trial's seed."""
    return int(np.random.SeedSequence([int(seed), 0x1EA7]).generate_state(1)[0])
