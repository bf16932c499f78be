"""A name -> object registry that fails with the valid choices and warns on overwrite (as timm's does)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownNameError(KeyError, ValueError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Registry(dict[str, T], Generic[T]):
    """A dict from spec names to classes or factories. ``REG[name]`` fails with the list of names."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def register(self, name: str, obj: T) -> T:
        if name in self:
            warnings.warn(f"{self.kind} {name!r} is registered again; the new entry replaces the old", stacklevel=2)
        dict.__setitem__(self, name, obj)
        return obj

    def __getitem__(self, name: str) -> T:
        try:
            return dict.__getitem__(self, name)
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r} (allowed: {', '.join(sorted(self))})") from None

    def __iter__(self) -> Iterator[str]:
        return dict.__iter__(self)
