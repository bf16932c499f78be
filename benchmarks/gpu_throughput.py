"""gpu_throughput: ResNet-18 training images/s through the study trainable against a bare loop on in-GPU data.

Runs only where a GPU is present (elsewhere it prints ``gpu_throughput_available: 0`` and stops).

- Study: `study.tuning.trainables.lnl_trainable` as a Ray Tune trial holding the whole GPU: the dataset
  decoded into the cache and put on the GPU once as uint8, batch-on-GPU augmentation (random resized crop,
  flip: one ``grid_sample`` per batch), CE with mixed precision (fp16 autocast + GradScaler) and
  channels-last, a validation pass and an epoch checkpoint reported to Ray every epoch. Throughput = training
  images per epoch / Ray's ``time_this_iter_s``, median over the epochs between the first (cuDNN autotune,
  warm-up) and the last (test evaluation, artifacts).
- Bare loop (the limit): the same model (`study.models.Classifier` over ResNet-18) on a fixed float batch
  already on the GPU in channels-last, the same optimizer, autocast and GradScaler; no input pipeline, no
  validation, no checkpoint.
Target: study / bare >= 0.9.

``python -m benchmarks gpu_throughput [--quick]``
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

RES = 224
BATCH = 256


def bare_loop(num_classes: int, steps: int, warmup: int = 20) -> float:
    import torch

    from study.models import Classifier, build_backbone

    torch.backends.cudnn.benchmark = True
    dev = torch.device("cuda")
    model = Classifier(build_backbone("resnet18", 3, RES), num_classes).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda")
    x = torch.randn(BATCH, 3, RES, RES, device=dev).to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (BATCH,), device=dev)

    def step():
        with torch.autocast("cuda"):
            loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return steps * BATCH / (time.perf_counter() - t0)


def study_trial(n: int, epochs: int, work: Path) -> tuple[float, list[float], int]:
    import ray
    from ray import tune

    from study.data import make_splits
    from study.experiment import load_dataset
    from study.tuning.plan import Point, TrialConfig
    from study.tuning.spec import Spec
    from study.tuning.trainables import lnl_trainable

    spec = Spec.model_validate(
        {
            "name": "gpu",
            "datasets": [
                {"name": "synthetic", "options": {"num_samples": n, "num_classes": 10, "image_size": RES, "seed": 0}}
            ],
            "noise": {"kinds": ["symmetric"], "rates": [0.2]},
            "ssl": [{"method": "random"}],
            "model": {"backbone": "resnet18"},
            "lnl": [{"algorithm": "ce", "epochs": epochs, "batch_size": BATCH}],
            "seeds": [0],
        }
    )
    data_cache = str(work / "cache" / "data")
    key = spec.datasets[0].key
    data = load_dataset(spec, key, data_cache)  # decoded into the cache before the timed trial
    ds = spec.dataset_map[key]
    n_train = len(make_splits(data, ds.splits.val_fraction, ds.splits.test_fraction, seed=0).train)
    run = TrialConfig(
        stage="final",
        id="gpu",
        point=Point(key, "symmetric", 0.2, "random", "ce", 0),
        hparams={"optimizer": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4},
    )
    ray.init(address="local", include_dashboard=False, log_to_driver=False)
    try:
        fn = tune.with_parameters(
            lnl_trainable,
            spec_data=spec.model_dump(mode="json"),
            cache_dir=str(work / "cache"),
            data_cache=data_cache,
            artifacts_root=str(work / "artifacts"),
        )
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)) - 1)
        gpus = 1 if ray.cluster_resources().get("GPU") else 0
        tuner = tune.Tuner(
            tune.with_resources(fn, {"cpu": cpus, "gpu": gpus}),
            param_space=run.to_ray(),
            run_config=tune.RunConfig(name="gpu", storage_path=str(work / "tune"), verbose=0),
        )
        res = tuner.fit()[0]
        if res.error:
            raise SystemExit(f"gpu_throughput: the trial failed: {res.error}")
        df = res.metrics_dataframe.sort_values("epoch")
        times = [float(t) for t in df["time_this_iter_s"].tolist()]
    finally:
        ray.shutdown()
    mid = times[1:-1] or times
    return n_train / statistics.median(mid), times, n_train


def main(quick: bool = False) -> None:
    import torch

    if not torch.cuda.is_available():
        print("gpu_throughput_available: 0")
        return
    n, epochs = (8000, 4) if quick else (20000, 6)
    print("gpu_throughput_available: 1")
    print(f"gpu_throughput_device: {torch.cuda.get_device_name(0).replace(' ', '_')}")
    print(f"gpu_throughput_batch: {BATCH}")
    print(f"gpu_throughput_resolution: {RES}")
    with tempfile.TemporaryDirectory() as tmp:
        ips, times, n_train = study_trial(n, epochs, Path(tmp))
    bare = bare_loop(10, steps=100 if quick else 200)
    print(f"gpu_throughput_train_images_per_epoch: {n_train}")
    print(f"gpu_throughput_study_epoch_s: {[round(t, 2) for t in times]}")
    print(f"gpu_throughput_study_images_per_s: {ips:.0f}")
    print(f"gpu_throughput_bare_images_per_s: {bare:.0f}")
    print(f"gpu_throughput_ratio: {ips / bare:.3f}")
