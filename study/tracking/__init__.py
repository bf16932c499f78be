"""MLflow tracking of a study, written from the driver only (one writer for the sqlite store).

``Tracker`` finds or creates runs by tag, so every trial has exactly one run however often the study is
interrupted and resumed; ``TrackingCallback`` is the Ray Tune callback that feeds it.
"""

from study.tracking.callback import TrackingCallback
from study.tracking.store import Tracker, default_tracking_uri

__all__ = ["Tracker", "TrackingCallback", "default_tracking_uri"]
