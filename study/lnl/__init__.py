"""Learning-with-noisy-labels algorithms, registered by the names used in specs."""

from __future__ import annotations

from study.lnl.base import Algorithm, OptimConfig
from study.lnl.ce import CrossEntropy
from study.registry import Registry

ALGORITHMS: Registry[type[Algorithm]] = Registry("LNL algorithm")
for _cls in (CrossEntropy,):
    ALGORITHMS.register(_cls.name, _cls)

__all__ = ["ALGORITHMS", "Algorithm", "OptimConfig"]
