"""Convert SimCLR's TensorFlow ResNet variables (saved as a NumPy ``.npz``) to a torchvision state dict.

    python scripts/simclr_tf_to_torchvision.py VARIABLES.npz OUT.pt [--depth 50] [--scope base_model/]

The public SimCLR v1/v2 checkpoints (github.com/google-research/simclr; Chen et al. 2020) are TensorFlow
checkpoints. Dump their variables to an ``.npz`` on a machine with TensorFlow (docs/weights.md gives the
three lines), then run this script anywhere: it needs NumPy and torch only, reads nothing else and
downloads nothing. The result loads with ``init: {weights: OUT.pt}`` into backbone ``resnet50`` (or 101,
152) and is checked against torchvision's parameter shapes before it is written.

The key mapping (docs/weights.md): SimCLR's ResNet creates its layers in a fixed order under ``scope``
(``conv2d``, ``conv2d_1``, ... and ``batch_normalization``, ``batch_normalization_1``, ...): the stem, then
per bottleneck block the projection shortcut first (first block of each stage), then the three
convolutions. Kernels go from TensorFlow's H x W x in x out to torch's out x in x H x W; batch-norm
``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` become ``weight``, ``bias``, ``running_mean``,
``running_var``. Heads (``head_contrastive``, ``head_supervised``), optimiser slots and counters are left out.
Selective-kernel (``_sk1``) and wider (2x, 4x) checkpoints do not fit torchvision's ResNets and are refused.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

#: bottleneck blocks per stage of each depth (He et al. 2016; SimCLR's resnet.py uses the same)
BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BN_FIELDS = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}


def torchvision_order(depth: int) -> tuple[list[str], list[str]]:
    """The torchvision names of the convolutions and of the batch norms, in SimCLR's creation order."""
    convs, bns = ["conv1"], ["bn1"]
    for stage, n in enumerate(BLOCKS[depth], start=1):
        for b in range(n):
            block = f"layer{stage}.{b}"
            if b == 0:  # the projection shortcut is created before the block's own convolutions
                convs.append(f"{block}.downsample.0")
                bns.append(f"{block}.downsample.1")
            convs += [f"{block}.conv{i}" for i in (1, 2, 3)]
            bns += [f"{block}.bn{i}" for i in (1, 2, 3)]
    return convs, bns


def numbered(variables: Mapping[str, np.ndarray], scope: str, layer: str, field: str) -> list[np.ndarray]:
    """The arrays ``{scope}{layer}[_N]/{field}``, ordered by N (no suffix is 0)."""
    pattern = re.compile(rf"^{re.escape(scope)}{layer}(?:_(\d+))?/{field}$")
    found = sorted((int(m.group(1) or 0), v) for k, v in variables.items() if (m := pattern.match(k)))
    return [v for _, v in found]


def convert(
    variables: Mapping[str, np.ndarray], depth: int = 50, scope: str = "base_model/"
) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict (without ``fc``) from SimCLR's TensorFlow variables."""
    conv_names, bn_names = torchvision_order(depth)
    kernels = numbered(variables, scope, "conv2d", "kernel")
    if len(kernels) != len(conv_names):
        raise ValueError(
            f"found {len(kernels)} convolution kernels under {scope!r}, a ResNet-{depth} has {len(conv_names)}; "
            "check --depth and --scope (variable names look like base_model/conv2d_1/kernel)"
        )
    state = {
        f"{n}.weight": torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        for n, k in zip(conv_names, kernels)
    }
    for tf_field, tv_field in BN_FIELDS.items():
        values = numbered(variables, scope, "batch_normalization", tf_field)
        if len(values) != len(bn_names):
            raise ValueError(
                f"found {len(values)} batch-norm {tf_field} arrays under {scope!r}, expected {len(bn_names)}"
            )
        state.update({f"{n}.{tv_field}": torch.from_numpy(np.ascontiguousarray(v)) for n, v in zip(bn_names, values)})
    state.update({f"{n}.num_batches_tracked": torch.tensor(0) for n in bn_names})
    check_shapes(state, depth)
    return state


def check_shapes(state: Mapping[str, torch.Tensor], depth: int) -> None:
    """Every tensor has the shape torchvision's ResNet gives it (refuses wide and selective-kernel nets)."""
    import torchvision.models

    ref = getattr(torchvision.models, f"resnet{depth}")(weights=None).state_dict()
    wrong = [f"{k} {tuple(v.shape)} vs {tuple(ref[k].shape)}" for k, v in state.items() if v.shape != ref[k].shape]
    if wrong:
        raise ValueError(
            f"{len(wrong)} tensors do not have torchvision's ResNet-{depth} shapes (a 2x/4x or _sk1 "
            f"checkpoint?): {', '.join(wrong[:5])}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("variables", type=Path, help=".npz of the TensorFlow checkpoint's variables")
    p.add_argument("out", type=Path, help="the torchvision state dict to write (torch.save)")
    p.add_argument("--depth", type=int, choices=sorted(BLOCKS), default=50)
    p.add_argument("--scope", default="base_model/", help="the ResNet's variable scope (default base_model/)")
    args = p.parse_args(argv)
    try:
        with np.load(args.variables) as npz:
            state = convert({k: npz[k] for k in npz.files}, args.depth, args.scope)
    except (OSError, ValueError) as e:
        print(f"{args.variables}: {e}", file=sys.stderr)
        return 2
    torch.save(state, args.out)
    print(f"{args.out}: {len(state)} tensors of a torchvision ResNet-{args.depth} (no fc)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
