"""A live progress line per stage: which of the study's stages, done / running / errored, the time
elapsed in the stage and an ETA from the trials finished so far (off with --quiet)."""

from __future__ import annotations

import sys
import time

from ray.tune import Callback

#: the study's stages in order (as ``study.tuning.studydir.STAGES``)
STAGES = ("pretrain", "lnl", "final")


class ProgressCallback(Callback):
    def __init__(self, stage: str, total: int, every: float = 5.0) -> None:
        self.stage, self.total, self.every = stage, total, every
        self._t0: float | None = None
        self._last, self._line = 0.0, ""

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_t0"] = None
        return d

    def on_step_end(self, iteration, trials, **info):
        now = time.time()
        self._t0 = self._t0 or now
        counts: dict[str, int] = {}
        for t in trials:
            counts[t.status] = counts.get(t.status, 0) + 1
        done, running, errored = counts.get("TERMINATED", 0), counts.get("RUNNING", 0), counts.get("ERROR", 0)
        left = max(self.total - done - errored, 0)
        rate = (done + errored) / max(now - self._t0, 1e-6)
        eta = f"{left / rate / 60:.1f} min" if rate > 0 and left else ("0 min" if not left else "after the first trial")
        k = STAGES.index(self.stage) + 1 if self.stage in STAGES else 0
        elapsed = f"{(now - self._t0) / 60:.1f} min"
        line = (
            f"[stage {k}/{len(STAGES)} {self.stage}] {done}/{self.total} trials done, {running} running, "
            f"{errored} errored, {elapsed} elapsed, ETA {eta}"
        )
        if line.split(", ")[:4] != self._line.split(", ")[:4] or now - self._last > 30:
            tty = sys.stderr.isatty()
            print(("\r" + line.ljust(110)) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
            self._line, self._last = line, now

    def on_experiment_end(self, trials, **info):
        if sys.stderr.isatty():
            print(file=sys.stderr)
