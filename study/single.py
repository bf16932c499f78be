"""One LNL training run on one dataset under injected label noise; prints clean-test macro-F1.

``python -m study.single --dataset fashion_mnist --noise symmetric --rate 0.4 --epochs 5``

The smallest end-to-end use of the data layer, the noise API and the training protocol: load and
cache the dataset, split it, corrupt the train and validation labels (never the test labels), train,
select the epoch by noisy-validation macro-F1, and report clean-test metrics at that epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from study.data import DATASETS, DataError, get_dataset, make_splits
from study.data.pipeline import AugmentConfig, TensorLoader
from study.lnl import ALGORITHMS, OptimConfig
from study.models import BACKBONES, Classifier, build_backbone
from study.noise import KINDS, inject_noise
from study.registry import UnknownNameError
from study.train import NonFiniteLossError, final_test, fit

DEFAULT_CACHE = Path(os.environ.get("STUDY_CACHE", Path.home() / ".cache" / "study"))


def corrupt_train_val(labels: np.ndarray, splits, num_classes: int, kind: str, rate: float, seed: int,
                      **options) -> tuple[np.ndarray, object]:
    """A copy of ``labels`` with the train and validation samples corrupted; test labels stay clean."""
    idx = np.concatenate([splits.train, splits.val])
    noisy = inject_noise(labels[idx], num_classes, kind, rate, seed, **options)
    out = labels.copy()
    out[idx] = noisy.labels
    return out, noisy


def run(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    opts = {"limit": args.limit} if args.dataset == "fashion_mnist" and args.limit else {}
    if args.root:
        opts["root"] = args.root
    t0 = time.perf_counter()
    data = get_dataset(args.dataset, **opts).load(args.cache)
    splits = make_splits(data, val_fraction=0.1, test_fraction=0.2, seed=args.seed)
    noise_opts = {"groups": data.noise_groups} if args.noise == "class_dependent" else {}
    noisy, info = corrupt_train_val(np.asarray(data.labels), splits, data.num_classes, args.noise, args.rate,
                                    args.seed, **noise_opts)
    print(f"{data.name}: {len(data)} images {data.resolution}px x{data.channels}, {data.num_classes} classes, "
          f"splits {splits.sizes()}, {args.noise} noise rate {args.rate} (realized {info.realized_rate:.3f}), "
          f"loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    images = data.images
    aug = AugmentConfig(scale=(0.7, 1.0), flip=True)
    train = TensorLoader(images[splits.train], noisy[splits.train], args.batch_size, shuffle=True, augment_cfg=aug,
                         device=device, seed=args.seed, indices=splits.train)
    val = TensorLoader(images[splits.val], noisy[splits.val], 512, device=device)

    def make_model():
        return Classifier(build_backbone(args.backbone, data.channels, data.resolution), data.num_classes)

    algo = ALGORITHMS[args.lnl](make_model, data.num_classes, len(data),
                                OptimConfig(lr=args.lr, epochs=args.epochs), device, noise_rate=args.rate)

    def report(epoch, m, _):
        print(f"epoch {epoch + 1}/{args.epochs}: train_loss {m['train_loss']:.4f} val_f1 {m['val_f1']:.4f} "
              f"({m['epoch_time']:.1f}s)", flush=True)

    result = fit(algo, train, val, args.epochs, on_epoch=report)
    test = TensorLoader(images[splits.test], np.asarray(data.labels)[splits.test], 512, device=device)
    metrics = final_test(algo, result, test)
    summary = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    print(f"test_f1: {metrics['test_f1']:.4f} (macro, at best-val epoch {result.best_epoch + 1}); "
          f"test_acc: {metrics['test_acc']:.4f}; test_balanced_acc: {metrics['test_balanced_acc']:.4f}; "
          f"test_auroc: {metrics['test_auroc']:.4f}; test_f1_last5: {metrics['test_f1_last5']:.4f}")
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.single", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--root", default=None, help="dataset root folder (default: the dataset's own)")
    p.add_argument("--limit", type=int, default=None, help="fashion_mnist: use the first N training images")
    p.add_argument("--noise", default="symmetric", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("--rate", type=float, default=0.4)
    p.add_argument("--lnl", default="ce", help=f"one of: {', '.join(ALGORITHMS)}")
    p.add_argument("--backbone", default="small_cnn", help=f"one of: {', '.join(BACKBONES)}")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"decode cache (default {DEFAULT_CACHE})")
    p.add_argument("--cpu", action="store_true", help="do not use a GPU even if one is present")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON too")
    args = p.parse_args(argv)
    if args.epochs < 1:
        print("study.single: --epochs must be >= 1", file=sys.stderr)
        return 2
    try:
        summary = run(args)
    except (DataError, UnknownNameError, ValueError) as e:
        print(f"study.single: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"study.single: training failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
