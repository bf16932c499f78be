"""``python -m benchmarks [NAME] [--quick] [--algo A ...]``: run one benchmark, or list them."""

from __future__ import annotations

import argparse
import ast
import importlib
import inspect
import sys
from pathlib import Path


def available() -> dict[str, str]:
    """Benchmark modules (a ``main`` function) and the first line of their docstrings, read without importing
    them (importing pulls in torch, Ray and MLflow)."""
    out = {}
    for path in sorted(Path(__file__).parent.glob("*.py")):
        if path.name.startswith("_"):
            continue
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            doc = ast.get_docstring(tree) or ""
            first = doc.strip().splitlines()[0] if doc else ""
            out[path.stem] = first.removeprefix(f"{path.stem}: ")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks")
    p.add_argument("name", nargs="?")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced size: a few minutes on 2 CPUs")
    size.add_argument(
        "--long",
        action="store_true",
        help="longer schedule (ssl_knn only): tests whether a claim needs more training",
    )
    p.add_argument(
        "--algo",
        action="append",
        default=[],
        help="run only this algorithm's part (ssl_effect only; repeatable): the same declared sizes",
    )
    args = p.parse_args(argv)
    names = available()
    if args.name is None:
        for n, doc in sorted(names.items()):
            print(f"{n}: {doc}")
        return 0
    if args.name not in names:
        print(f"benchmarks: unknown benchmark {args.name!r} (allowed: {', '.join(sorted(names))})", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{args.name}")
    extra = {}
    if args.algo:
        if "algos" not in inspect.signature(module.main).parameters:
            print(f"benchmarks: {args.name} has no --algo option (only ssl_effect has one)", file=sys.stderr)
            return 2
        extra["algos"] = tuple(args.algo)
    if args.long:
        if "long" not in inspect.signature(module.main).parameters:
            print(f"benchmarks: {args.name} has no --long size (only ssl_knn has one)", file=sys.stderr)
            return 2
        module.main(quick=False, long=True)
    else:
        module.main(quick=args.quick, **extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
