"""Claims against the replication (issue 20, item 2): the verdict rule, the generated text, the real tables."""

import numpy as np
import pandas as pd
import pytest

from judgelab.experiments import claims as cl


def test_verdict_rule():
    assert cl.verdict(0.51, 0.60, 0.5) == "holds"
    assert cl.verdict(0.40, 0.49, 0.5) == "does not hold"
    assert cl.verdict(0.50, 0.50, 0.5) == "does not hold"  # a degenerate interval at chance is not above it
    assert cl.verdict(0.49, 0.52, 0.5) == "cannot tell at this scale"
    assert cl.verdict(0.30, 0.33, 0.5, "<") == "holds" and cl.verdict(0.68, 0.70, 0.5, "<") == "does not hold"
    assert cl.verdict(np.nan, np.nan, 0.5) == "not measured"
    with pytest.raises(ValueError):
        cl.verdict(0.6, 0.5, 0.5)
    with pytest.raises(ValueError):
        cl.verdict(0.5, 0.6, 0.5, ">=")


def _table(ours_low, ours_high):
    return pd.DataFrame([{"quantity": "S with swapped labels, GPT-4, XSUM", "claimed": "< 0.5",
                          "released_low": 0.304, "released_high": 0.328, "ours_low": ours_low, "ours_high": ours_high,
                          "released_verdict": "", "ours_verdict": ""},
                         {"quantity": "pooled R, GPT-4, XSUM", "claimed": "> 0.5", "released_low": 0.66, "released_high": 0.68,
                          "ours_low": 0.52, "ours_high": 0.86, "released_verdict": "", "ours_verdict": ""}])


def test_verdicts_flip_with_the_interval():
    t = cl.with_verdicts(_table(0.672, 0.696))
    assert t.released_verdict.tolist() == ["holds", "holds"] and t.ours_verdict.tolist() == ["does not hold", "holds"]
    text = cl.claims_text(t)
    assert "on the 2 claims" in text and "ours: *holds* 1, *does not hold* 1" in text
    assert "opposite ways on 1: S with swapped labels, GPT-4, XSUM (holds as released, does not hold in ours)" in text
    # the same table with ours below chance: no disagreement left
    t2 = cl.with_verdicts(_table(0.30, 0.33))
    assert t2.ours_verdict.tolist()[0] == "holds" and "On no claim" in cl.claims_text(t2)
    t3 = cl.with_verdicts(_table(0.45, 0.55))
    assert t3.ours_verdict.tolist()[0] == "cannot tell at this scale" and "On no claim" in cl.claims_text(t3)


def test_real_claims_tables():
    ra = cl.claims_reanalysis()
    assert list(ra.columns) == cl.COLUMNS and set(ra.released_verdict) | set(ra.ours_verdict) <= set(cl.VERDICTS)
    assert (ra.wording == "paraphrase").all()
    row = ra[ra.quantity == "S with swapped labels, GPT-4, XSUM"].iloc[0]
    assert row.released_verdict == "holds" and row.ours_verdict == "does not hold"
    assert row.released == pytest.approx(1 - row.ours)
    ft = cl.claims_finetuning()
    assert len(ft) == 10 and ft.ours_what.str.contains("N = ").sum() == 8
    om = cl.claims_open_models()
    assert om.quantity.is_unique and (om.released_verdict == "holds").all()
