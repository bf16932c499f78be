"""Errors of the orchestration that are the user's input, not a failed run (exit 2)."""

from __future__ import annotations


class StudyInputError(ValueError):
    """Bad input (a path, an argument, a spec that cannot run here); the message names it and the fix."""
