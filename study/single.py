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
from typing import Any

import torch

from study.data import DATASETS, DataError
from study.errors import NonFiniteLossError
from study.experiment import build_trial
from study.lnl import ALGORITHMS
from study.models import BACKBONES
from study.noise import KINDS
from study.registry import UnknownNameError
from study.tuning.plan import Point
from study.tuning.spec import Spec, parse_spec

DEFAULT_CACHE = Path(os.environ.get("STUDY_CACHE", Path.home() / ".cache" / "study"))


def spec_of(args: argparse.Namespace) -> Spec:
    """The one-cell spec these arguments describe (random init, no tuning), checked like any spec."""
    opts: dict[str, Any] = {"limit": args.limit} if args.dataset == "fashion_mnist" and args.limit else {}
    if args.root:
        opts["root"] = args.root
    return parse_spec(
        {
            "name": "single",
            "datasets": [{"name": args.dataset, "options": opts}],
            "noise": {"kinds": [args.noise], "rates": [args.rate]},
            "ssl": [{"method": "random"}],
            "lnl": [
                {"algorithm": args.lnl, "epochs": args.epochs, "batch_size": args.batch_size, "fixed": {"lr": args.lr}}
            ],
            "seeds": [args.seed],
            "model": {"backbone": args.backbone},
        },
        source="python -m study.single",
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    spec = spec_of(args)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    point = Point(spec.datasets[0].key, args.noise, args.rate, "random", args.lnl, args.seed)
    t0 = time.perf_counter()
    trial = build_trial(spec, point, dict(spec.lnl[0].fixed), device, args.cache, args.cache)
    data, splits = trial.data, trial.splits
    print(
        f"{data.name}: {len(data)} images {data.resolution}px x{data.channels}, {data.num_classes} classes, "
        f"splits {splits.sizes()}, {args.noise} noise rate {args.rate} (realized {trial.noise.realized_rate:.3f}), "
        f"loaded in {time.perf_counter() - t0:.1f}s",
        flush=True,
    )

    def report(epoch: int, m: dict[str, Any], _: object) -> None:
        print(
            f"epoch {epoch + 1}/{args.epochs}: train_loss {m['train_loss']:.4f} val_f1 {m['val_f1']:.4f} "
            f"({m['epoch_time']:.1f}s)",
            flush=True,
        )

    result = trial.fit(on_epoch=report)
    metrics = trial.final_metrics(result, args.cache)
    summary = {k: v for k, v in metrics.items() if not isinstance(v, list)}
    print(
        f"test_f1: {metrics['test_f1']:.4f} (macro, at best-val epoch {result.best_epoch + 1}); "
        f"test_acc: {metrics['test_acc']:.4f}; test_balanced_acc: {metrics['test_balanced_acc']:.4f}; "
        f"test_auroc: {metrics['test_auroc']:.4f}; test_f1_last5: {metrics['test_f1_last5']:.4f}"
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m study.single", description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion_mnist", help=f"one of: {', '.join(DATASETS)}")
    p.add_argument("--root", default=None, help="dataset root folder (default: the dataset's own)")
    p.add_argument("--limit", type=int, default=None, help="fashion_mnist: use the first N training images")
    p.add_argument("--noise", default="symmetric", help=f"one of: {', '.join(KINDS)}")
    p.add_argument("--rate", type=float, default=0.4)
    p.add_argument("--lnl", default="ce", help=f"one of: {', '.join(ALGORITHMS)}")
    p.add_argument("--backbone", default="small_cnn", help=f"one of: {', '.join(BACKBONES)}, or timm:<architecture>")
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
    except (DataError, UnknownNameError, ValueError) as e:  # SpecError, HparamError are ValueErrors
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
