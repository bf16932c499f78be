"""How a packed trial learns which of its members its cells' ASHA stopped: a board the driver posts to.

Ray Tune's scheduler can only stop a whole trial. A packed trial (``resources.pack``) trains several
Optuna trials of one cell, each pruned on its own (``PerCellASHA``), so the scheduler posts its decision
about each of a packed trial's reports here, and the trial, after reporting an epoch, waits for the
decision about that epoch and drops the members it names (a pruned member stops costing compute).

The board is a Ray actor named after the study's stage experiment, created by the driver; its posts live
as long as the driver (a restored driver creates a new one, and the scheduler, whose pruned members are
saved with its state, posts them again when their trial reports).
"""

from __future__ import annotations

import asyncio
import hashlib

import ray

#: how long a packed trial waits for the decision about an epoch (then it goes on with every member)
WAIT_S = 60.0


@ray.remote(num_cpus=0)
class PruneBoard:
    """Per (Ray trial, epoch): the members the scheduler stopped. Async: a waiting trial holds no thread."""

    def __init__(self) -> None:
        self.posts: dict[tuple[str, int], list[int]] = {}
        self.events: dict[tuple[str, int], asyncio.Event] = {}

    def _event(self, key: tuple[str, int]) -> asyncio.Event:
        if key not in self.events:
            self.events[key] = asyncio.Event()
        return self.events[key]

    async def post(self, trial_id: str, epoch: int, members: list[int]) -> None:
        key = (trial_id, epoch)
        self.posts[key] = sorted(set(members))
        self._event(key).set()
        # one trial's older epochs are no longer waited for
        for old in [k for k in self.posts if k[0] == trial_id and k[1] < epoch - 1]:
            self.posts.pop(old, None)
            self.events.pop(old, None)

    async def wait(self, trial_id: str, epoch: int, timeout: float = WAIT_S) -> list[int] | None:
        """The members stopped after ``epoch``'s report of ``trial_id``; None when nothing was posted in time."""
        key = (trial_id, epoch)
        try:
            await asyncio.wait_for(self._event(key).wait(), timeout)
        except TimeoutError:
            return None
        return self.posts.get(key, [])


def board_name(experiment: str) -> str:
    """The board's Ray actor name for a stage experiment (its path: unique per study and stage)."""
    return "study-prunes-" + hashlib.sha1(experiment.encode()).hexdigest()[:16]


def open_board(name: str):
    """The driver's board ``name`` (created on first call; lives as long as this Ray job)."""
    return PruneBoard.options(name=name, get_if_exists=True).remote()


def stopped_members(name: str | None, trial_id: str, epoch: int) -> list[int]:
    """In a packed trial: the members to stop after reporting ``epoch`` (none without a board, or when the
    scheduler posted nothing within ``WAIT_S``)."""
    if not name:
        return []
    try:
        board = ray.get_actor(name)
    except ValueError:  # no board: the stage has no early stopping
        return []
    return ray.get(board.wait.remote(trial_id, epoch)) or []
