"""packing: one training step of P same-architecture networks packed (``study.packing``) against the same
networks stepped one after another, on this machine.

Three ways, each a forward, backward and SGD step of cross-entropy on its own batch per member: ``vmap``
(the pack in one batched call), ``loop`` (the pack's stacked tensors, one member after another) and
``separate`` (P ordinary networks with ``torch.optim.SGD``, what unpacked trials do); then
``choose_execution`` on the same shapes, which packed trials use to pick ``vmap`` or ``loop``. Median
seconds per step over ``REPEATS`` after a warm-up step. This is the engine's figure: the study-level
comparison #21 asks for (8 CE trials packed through `study` against one at a time and against the shell
loop, ``packing_vs_shell`` and ``packing_vs_unpacked``) needs packed trials, which are not built yet.

Declared before running: ``FULL``: P = 8 small CNNs, batch 64, 28 px RGB, 10 classes, 2 threads;
``QUICK``: the same with 5 repeats instead of 20.

``python -m benchmarks packing [--quick]``
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

MEMBERS, BATCH, SIDE, CLASSES = 8, 64, 28, 10
FULL, QUICK = 20, 5


def _median_step(step: Callable[[], None], repeats: int) -> float:
    step()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(quick: bool = False) -> None:
    from study.models import Classifier, build_backbone
    from study.packing import PackedNets, PackedSGD, choose_execution, packed_cross_entropy

    repeats = QUICK if quick else FULL
    torch.manual_seed(0)
    nets = [Classifier(build_backbone("small_cnn", 3, SIDE), CLASSES).train() for _ in range(MEMBERS)]
    x = torch.randn(MEMBERS, BATCH, 3, SIDE, SIDE)
    y = torch.randint(0, CLASSES, (MEMBERS, BATCH))
    packed = PackedNets(nets).train()
    opt = PackedSGD(packed, [0.05] * MEMBERS, 0.9, 5e-4)
    opts = [torch.optim.SGD(n.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4) for n in nets]

    def packed_step() -> None:
        loss = packed_cross_entropy(packed(x), y).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def separate_step() -> None:
        for i, (net, o) in enumerate(zip(nets, opts)):
            loss = torch.nn.functional.cross_entropy(net(x[i]), y[i])
            o.zero_grad()
            loss.backward()
            o.step()

    figures = {}
    for mode in ("vmap", "loop"):
        packed.execution = mode
        figures[mode] = _median_step(packed_step, repeats)
    figures["separate"] = _median_step(separate_step, repeats)
    chosen = choose_execution(packed, x, y)
    print(f"packing_members: {MEMBERS}")
    print(f"packing_threads: {torch.get_num_threads()}")
    for mode, seconds in figures.items():
        print(f"packing_engine_{mode}_step_s: {seconds:.4f}")
    print(f"packing_engine_chosen: {chosen}")
    print(f"packing_engine_chosen_vs_separate: {figures['separate'] / figures[chosen]:.2f}")
    print(f"packing_engine_vmap_vs_separate: {figures['separate'] / figures['vmap']:.2f}")
