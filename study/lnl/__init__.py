"""Learning-with-noisy-labels algorithms, registered by the names used in specs.

``ALGORITHMS[name](make_model, num_classes, num_samples, optim, device, noise_rate=..., **hparams)``;
hyperparameters are keyword arguments with the papers' defaults.
"""

from __future__ import annotations

from study.lnl.base import Algorithm, OptimConfig
from study.lnl.ce import CrossEntropy
from study.lnl.co_teaching import CoTeaching
from study.lnl.co_teaching_plus import CoTeachingPlus
from study.lnl.dividemix import DivideMix
from study.lnl.elr import EarlyLearningRegularization
from study.lnl.gce import GeneralizedCrossEntropy
from study.lnl.linear_probe import LinearProbe
from study.lnl.sce import SymmetricCrossEntropy
from study.registry import Registry

ALGORITHMS: Registry[type[Algorithm]] = Registry("LNL algorithm")
for _cls in (CrossEntropy, CoTeaching, CoTeachingPlus, DivideMix, EarlyLearningRegularization,
             GeneralizedCrossEntropy, SymmetricCrossEntropy, LinearProbe):
    ALGORITHMS.register(_cls.name, _cls)

__all__ = ["ALGORITHMS", "Algorithm", "OptimConfig"]
