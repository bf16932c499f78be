"""docs/hyperparameters.md is what the declarations say (it is generated, never edited by hand)."""

from __future__ import annotations

from scripts.hyperparameters_doc import DOC, render


def test_the_doc_matches_the_declarations():
    assert DOC.read_text() == render(), "run `python scripts/hyperparameters_doc.py` and commit docs/hyperparameters.md"
