"""``python -m benchmarks [NAME] [--quick]``: run one benchmark, or list them."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> dict[str, str]:
    out = {}
    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name.startswith("_"):
            continue
        m = importlib.import_module(f"benchmarks.{mod.name}")
        if hasattr(m, "main"):
            out[mod.name] = (m.__doc__ or "").strip().splitlines()[0] if m.__doc__ else ""
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("name", nargs="?")
    p.add_argument("--quick", action="store_true", help="reduced size: a few minutes on 2 CPUs")
    args = p.parse_args(argv)
    names = available()
    if args.name is None:
        for n, doc in sorted(names.items()):
            print(f"{n}: {doc}")
        return 0
    if args.name not in names:
        print(f"benchmarks: unknown benchmark {args.name!r} (allowed: {', '.join(sorted(names))})", file=sys.stderr)
        return 2
    importlib.import_module(f"benchmarks.{args.name}").main(quick=args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
