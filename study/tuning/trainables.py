"""The Ray Tune trainables: a stage-1 pretraining job and an LNL trial (tuning or final).

An LNL trial is ``study.single`` made restartable: it loads the dataset from the cache, splits it,
corrupts the train (and validation) labels with the trial's seed, builds the encoder (random, or the
stage-1 encoder from the cache), trains with ``study.train.fit`` and reports every epoch with a
``ray.tune.Checkpoint`` holding the algorithm state, the fit result and the loader's shuffling state, so
a restored trial continues from its last epoch. The last report adds the clean-test metrics at the
best-validation epoch and ``trial_finished``. A non-finite loss is reported as ``error`` (and not
retried: it would recur); other exceptions propagate so Ray retries the trial.

Trials use the GPU share Ray gives them (mixed precision, channels-last) and the CPU where there is none.

Shared storage (``study.storage``): ``cache_dir`` may be an ``s3://``/``gs://`` URI, in which case the
encoder is downloaded from it to this node's mirror (and a pretraining job uploads the one it trains);
an empty ``data_cache`` means this node's own decoded-dataset cache; ``artifacts_uri``, when set, receives
a copy of the trial's MLflow artifacts (``<artifacts_uri>/<trial id>/``), which the driver downloads to
``artifacts_root`` before logging them, since the trial may run on a node whose disk the driver cannot read.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from study.tuning.plan import Point
from study.tuning.spec import OPTIM_PARAMS, Spec


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _node_id() -> str:
    """The Ray node this trial runs on (recorded per trial, so a trial moved by a node loss shows both)."""
    import ray

    return ray.get_runtime_context().get_node_id()


def _threads() -> None:
    try:
        from ray import tune
        cpus = tune.get_context().get_trial_resources().required_resources.get("CPU", 1)
    except Exception:
        cpus = 1
    torch.set_num_threads(max(1, int(cpus)))


def dataset_options(spec: Spec, key: str) -> dict:
    d = spec.dataset_map[key]
    opts = dict(d.options)
    if spec.model.resolution and "resolution" not in opts:
        opts["resolution"] = spec.model.resolution
    return opts


def load_data(spec: Spec, key: str, data_cache: str):
    from study.data import get_dataset

    d = spec.dataset_map[key]
    return get_dataset(d.name, **dataset_options(spec, key)).load(data_cache)


def noise_options(spec: Spec, data, key: str, kind: str) -> dict:
    opts = dict(spec.noise.options)
    if kind == "class_dependent" and "groups" not in opts:
        groups = spec.dataset_map[key].noise_groups
        if groups:
            index = {c: i for i, c in enumerate(data.class_names)}
            opts["groups"] = [[index[g] if isinstance(g, str) else int(g) for g in grp] for grp in groups]
        else:
            opts["groups"] = data.noise_groups
    if kind != "class_dependent":
        opts.pop("groups", None)
    if kind != "transition":
        opts.pop("transition", None)
    return opts


def noisy_labels(spec: Spec, data, splits, point: Point):
    """Labels with the train (and, by default, validation) samples corrupted; test labels stay clean."""
    from study.noise import inject_noise

    labels = np.asarray(data.labels)
    idx = np.concatenate([splits.train, splits.val]) if spec.noise.noisy_validation else splits.train
    noisy = inject_noise(labels[idx], data.num_classes, point.noise_kind, point.noise_rate, point.seed,
                         **noise_options(spec, data, point.dataset, point.noise_kind))
    out = labels.copy()
    out[idx] = noisy.labels
    return out, noisy


def pretrain_request(spec: Spec, dataset_key: str, ssl_key: str, seed: int):
    from study.ssl import PretrainRequest

    d, s = spec.dataset_map[dataset_key], spec.ssl_map[ssl_key]
    return PretrainRequest(dataset=d.name, dataset_options=dataset_options(spec, dataset_key), split_seed=seed,
                           method=s.method, hparams=dict(s.hparams), backbone=spec.model.backbone,
                           resolution=spec.model.resolution, epochs=s.epochs_for(dataset_key), init=s.init,
                           seed=seed, batch_size=s.batch_size, val_fraction=d.splits.val_fraction,
                           test_fraction=d.splits.test_fraction)


def ssl_available() -> bool:
    try:
        import study.ssl  # noqa: F401
        return True
    except Exception:
        return False


def _trial_id() -> str | None:
    try:
        from ray import tune
        return tune.get_context().get_trial_id()
    except Exception:
        return None


def build_encoder(spec: Spec, point: Point, data, cache_dir: str, data_cache: str, device):
    """The trial's encoder: a fresh backbone for ``random`` (without study.ssl), else the stage-1 encoder.

    Leaves torch's global generator seeded with the trial's seed, so what is initialised next (the heads)
    does not depend on whether this process trained the encoder or found it in the cache (training it
    draws from that generator): two runs of one configuration give the same result."""
    from study.models import build_backbone

    entry = spec.ssl_map[point.ssl]
    if entry.method == "random" and not ssl_available():
        torch.manual_seed(point.seed)
        encoder = build_backbone(spec.model.backbone, data.channels, data.resolution)
    else:
        from study.ssl import load_encoder, pretrain

        path = pretrain(pretrain_request(spec, point.dataset, point.ssl, point.seed), cache_dir, device=device,
                        data_cache_dir=data_cache, owner=_trial_id())
        encoder = load_encoder(path, device="cpu")
    torch.manual_seed(point.seed)
    return encoder


def split_hparams(hparams: dict) -> tuple[dict, int | None, dict]:
    optim = {k: v for k, v in hparams.items() if k in OPTIM_PARAMS}
    batch = hparams.get("batch_size")
    algo = {k: v for k, v in hparams.items() if k not in OPTIM_PARAMS and k != "batch_size"}
    return optim, batch, algo


def lnl_trainable(config: dict, spec_data: dict, cache_dir: str, data_cache: str, artifacts_root: str,
                  artifacts_uri: str | None = None) -> None:
    from ray import tune

    from study import storage

    from study.data import make_splits
    from study.data.pipeline import AugmentConfig, TensorLoader
    from study.lnl import ALGORITHMS, OptimConfig
    from study.models import Classifier
    from study.train import FitResult, NonFiniteLossError, final_test, fit
    from study.tuning.spec import algorithm_hparams

    cfg = config.get("run", config)
    spec = Spec.model_validate(spec_data)
    point = Point(**cfg["point"])
    entry = spec.lnl_map[point.lnl]
    ds = spec.dataset_map[point.dataset]
    metric, mode = spec.tuning.metric, spec.tuning.mode
    data_cache = storage.node_data_cache(data_cache)
    _threads()
    device = _device()
    on_gpu = device.type == "cuda"
    torch.manual_seed(point.seed)
    np.random.seed(point.seed)

    data = load_data(spec, point.dataset, data_cache)
    splits = make_splits(data, ds.splits.val_fraction, ds.splits.test_fraction, seed=point.seed)
    noisy, info = noisy_labels(spec, data, splits, point)
    optim, batch, algo_hp = split_hparams(cfg["hparams"])
    if "seed" in (algorithm_hparams(entry.algorithm) or ()) and "seed" not in algo_hp:
        algo_hp["seed"] = point.seed
    encoder = build_encoder(spec, point, data, cache_dir, data_cache, device)

    def make_model():
        import copy
        return Classifier(copy.deepcopy(encoder), data.num_classes, tuple(entry.head.hidden), frozen=entry.head.frozen)

    train = TensorLoader(data.images[splits.train], noisy[splits.train], int(batch or entry.batch_size), shuffle=True,
                         augment_cfg=AugmentConfig(scale=(0.7, 1.0), flip=True), device=device, seed=point.seed,
                         indices=splits.train, channels_last=on_gpu)
    val = TensorLoader(data.images[splits.val], noisy[splits.val], 512, device=device, channels_last=on_gpu)
    algo = ALGORITHMS[entry.algorithm](make_model, data.num_classes, len(data),
                                       OptimConfig(epochs=entry.epochs, **optim), device, noise_rate=point.noise_rate,
                                       amp=on_gpu, **algo_hp)
    if on_gpu:
        for net in algo.nets:
            net.to(memory_format=torch.channels_last)

    # -- resume from the last epoch checkpoint
    start, result = 0, FitResult()
    ckpt = tune.get_checkpoint()
    if ckpt is not None:
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
        algo.load_state_dict(state["algo"])
        result, start = FitResult.from_state(state["result"]), state["epoch"] + 1
        train.generator.set_state(state["generator"])

    def objective(res: FitResult) -> float:
        vals = [h[metric] for h in res.history if metric in h and math.isfinite(h[metric])]
        return (max(vals) if mode == "max" else min(vals)) if vals else math.nan

    def report(epoch: int, metrics: dict, res: FitResult, extra: dict | None = None) -> None:
        with tempfile.TemporaryDirectory() as d:
            torch.save({"algo": algo.state_dict(), "result": res.to_state(), "epoch": epoch,
                        "generator": train.generator.get_state()}, Path(d) / "state.pt")
            clean = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
            tune.report({**clean, "epoch": epoch, "objective": objective(res), "node_id": _node_id(),
                         "start_epoch": start, **(extra or {})},
                        checkpoint=tune.Checkpoint.from_directory(d))

    def on_epoch(epoch: int, metrics: dict, res: FitResult) -> None:
        if epoch < entry.epochs - 1:
            report(epoch, metrics, res)

    clean_labels = np.asarray(data.labels)
    try:
        result = fit(algo, train, val, entry.epochs, clean_train_labels=clean_labels, noisy_train_labels=noisy,
                     start_epoch=start, result=result, on_epoch=on_epoch)
    except NonFiniteLossError as e:
        last = result.history[-1] if result.history else {}
        tune.report({**{k: v for k, v in last.items() if isinstance(v, (int, float))},
                     "epoch": len(result.history), "error": f"non-finite loss: {e}"})
        return

    # -- final: clean-test metrics at the best-validation epoch, artifacts for MLflow
    test = TensorLoader(data.images[splits.test], clean_labels[splits.test], 512, device=device,
                        channels_last=on_gpu)
    final = final_test(algo, result, test)
    if ds.shifted_test is not None:
        from study.data import get_dataset
        shifted = get_dataset(ds.shifted_test.name, **{**({"resolution": data.resolution}),
                                                         **ds.shifted_test.options}).load(data_cache)
        sl = TensorLoader(shifted.images, np.asarray(shifted.labels), 512, device=device)
        from study.train import predict_probs
        from study.metrics import classification_metrics
        probs, y = predict_probs(algo, sl)
        final.update({k: v for k, v in classification_metrics(y, probs, prefix="shifted_test_").items()})
    trial_id = tune.get_context().get_trial_id()
    art = Path(artifacts_root) / trial_id
    art.mkdir(parents=True, exist_ok=True)
    torch.save({"state": algo.state_dict(), "best_epoch": result.best_epoch}, art / "best_checkpoint.pt")
    np.savez_compressed(art / "noisy_labels.npz", labels=noisy, clean=clean_labels, train=splits.train,
                        val=splits.val, test=splits.test)
    (art / "noise.json").write_text(json.dumps({"kind": point.noise_kind, "rate": point.noise_rate,
                                                "realized_rate": info.realized_rate,
                                                "transition": np.asarray(info.transition).tolist()}))
    (art / "confusion_matrix.json").write_text(json.dumps({"class_names": data.class_names,
                                                           "matrix": final.get("test_confusion")}))
    if artifacts_uri:
        storage.upload_dir(art, storage.join(artifacts_uri, trial_id))
    scalars = {k: v for k, v in final.items() if isinstance(v, (int, float))}
    report(entry.epochs - 1, result.history[-1], result,
           {**scalars, "best_val_f1": result.best_val_f1, "trial_finished": True, "artifact_dir": str(art),
            "per_class_f1": json.dumps(final.get("test_per_class_f1"))})


def pretrain_trainable(config: dict, spec_data: dict, cache_dir: str, data_cache: str) -> None:
    """One stage-1 job: ``study.ssl.pretrain`` reuses the cached encoder or trains it under a file lock."""
    from ray import tune

    from study import storage
    from study.ssl import pretrain

    job = config.get("job", config)
    data_cache = storage.node_data_cache(data_cache)
    spec = Spec.model_validate(spec_data)
    _threads()
    request = pretrain_request(spec, job["dataset"], job["ssl"], job["seed"])

    def on_epoch(epoch: int, metrics: dict) -> None:
        tune.report({**{k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}, "epoch": epoch})

    path = pretrain(request, cache_dir, device=_device(), on_epoch=on_epoch, data_cache_dir=data_cache,
                    owner=_trial_id())
    tune.report({"epoch": request.epochs, "trial_finished": True, "encoder_path": str(path)})


os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
