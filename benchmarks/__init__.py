"""Performance and reliability benchmarks. Each module ``benchmarks/<name>.py`` defines
``main(quick: bool) -> None`` and prints ``name: value`` lines; run one with
``.venv/bin/python -m benchmarks NAME [--quick]``; without NAME the list is printed."""
