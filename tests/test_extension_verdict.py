"""One verdict rule: aiface/verdict.py and its JSON export for the extension agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aiface import verdict as rule

ROOT = Path(__file__).resolve().parent.parent
VERDICT_JSON = ROOT / "extension" / "src" / "verdict.json"


def grid() -> list[tuple[float, float]]:
    """Probabilities on a fine grid, at the edges and on either side of each threshold and of NO_SIGN_BELOW."""
    thresholds = [0.05, 0.1, 0.3, 0.5, 0.8837211520393335, 0.95, 0.999]
    probabilities = sorted({*np.linspace(0, 1, 201).tolist(), 1e-9, 0.0004, 0.0005, 0.9994, 0.9995, 0.9999999,
                            *(np.nextafter(v, d) for v in (*thresholds, rule.NO_SIGN_BELOW) for d in (0, 1)),
                            *thresholds, rule.NO_SIGN_BELOW})
    return [(float(p), t) for t in thresholds for p in probabilities]


def test_committed_json_is_the_python_definition():
    assert VERDICT_JSON.read_text(encoding="utf-8") == rule.rules_json(), (
        "extension/src/verdict.json is stale: run python -m aiface.verdict extension/src/verdict.json")


def test_the_verdict_agrees_with_the_label():
    for p, t in grid():
        code = rule.verdict(p, t)
        # The service's label is fake iff p >= t: likely_ai exactly then, never no_sign or inconclusive.
        assert (code == rule.LIKELY_AI) == (p >= t), (p, t)
        if p < t:
            assert (code == rule.NO_SIGN) == (p < rule.NO_SIGN_BELOW), (p, t)


def test_the_issue_examples_read_as_their_number_says():
    threshold = 0.8837211520393335  # the shipped model's
    assert rule.describe(0.96, threshold)["label"] == "Likely AI-generated"  # read "Uncertain" before
    assert rule.describe(0.866, threshold)["label"] == "Inconclusive"
    assert rule.describe(0.02, threshold)["label"] == "No sign of AI generation"
    words = rule.describe(0.866, threshold)
    assert words["percent"] == "86.6 %"
    assert words["meaning"].startswith("86.6 % means: of the images the model scores like this one, about 87 in 100")
    assert "88.4 %" in words["explanation"] and "threshold" not in json.dumps(words)


@pytest.mark.parametrize("p, shown", [(0.0, "0.0 %"), (0.0004, "< 0.1 %"), (0.00051, "0.1 %"), (0.8655, "86.6 %"),
                                      (0.99949, "99.9 %"), (0.9995, "> 99.9 %"), (1.0, "100.0 %")])
def test_percent_never_rounds_to_certainty(p, shown):
    assert rule.percent(p) == shown
