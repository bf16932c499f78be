"""Errors of the orchestration that are the user's input, not a failed run (exit 2)."""

from __future__ import annotations


class StudyInputError(ValueError):
    """Bad input (a path, an argument, a spec that cannot run here); the message names it and the fix."""


class StudyInterrupted(Exception):
    """The user stopped the driver (Ctrl-C) during ``stage``: nothing finished is lost, the stage stays
    unfinished in ``state.json``, and ``study resume`` continues it (exit 130)."""

    def __init__(self, stage: str, location: str) -> None:
        super().__init__(
            f"interrupted during stage {stage}; what finished is kept. Continue with: study resume {location}"
        )
        self.stage = stage
        self.location = location
