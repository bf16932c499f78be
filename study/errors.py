"""Errors shared across the stages."""

from __future__ import annotations


class NonFiniteLossError(RuntimeError):
    """Training stopped: the loss became NaN or infinite. Not retried (it would recur); the trial is
    recorded as failed with this message and the study goes on."""
