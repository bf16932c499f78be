"""Learning-with-noisy-labels algorithms, registered by the names used in specs.

``ALGORITHMS[name](make_model, num_classes, num_samples, optim, device, noise_rate=..., amp=..., seed=...,
**hparams)``: ``optim`` is an ``OptimConfig``, ``seed`` the trial's seed, and ``hparams`` the algorithm's own
hyperparameters, declared once with the papers' defaults and their allowed ranges as its nested
``Hparams`` (``ALGORITHMS[name].Hparams``, which the spec checks its entries against); a name or value the
declaration does not accept raises ``study.hparams.HparamError``. ``step_cost`` is an algorithm's compute
per training step relative to plain cross-entropy, for ``study plan``'s estimate.
"""

from __future__ import annotations

from study.lnl.base import Algorithm, LoaderHparams, OptimConfig, StepOutput
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
for _cls in (
    CrossEntropy,
    CoTeaching,
    CoTeachingPlus,
    DivideMix,
    EarlyLearningRegularization,
    GeneralizedCrossEntropy,
    SymmetricCrossEntropy,
    LinearProbe,
):
    ALGORITHMS.register(_cls.name, _cls)

__all__ = ["ALGORITHMS", "Algorithm", "LoaderHparams", "OptimConfig", "StepOutput"]
