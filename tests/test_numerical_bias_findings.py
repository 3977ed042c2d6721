"""The chapter's sentences follow their tables: each is checked on a table that would make it false."""

from __future__ import annotations

import numpy as np
import pandas as pd

from judgelab.experiments.numerical_bias import findings as F


def _gold(values):
    return pd.DataFrame({"subset": ["en-de", "en-zh", "ne-en", "si-en"], "n_full": 1000,
                         "kurtosis_full": values, "paper_kurtosis": [1.48, np.nan, 0.97, -0.72]})


def test_gold_sentence_says_when_a_value_differs():
    ok = F.gold_sentence(_gold([1.4838, 0.2, 0.9733, -0.7243]))
    assert "En-De 1.48 (paper 1.48)" in ok and "all 3 equal" in ok and "En-Zh" not in ok
    bad = F.gold_sentence(_gold([8.51, 0.2, 1.12, -0.7243]))
    assert "1 of 3 equal" in bad and "En-De, Ne-En differ" in bad and "all 3" not in bad


def _align(diffs):
    rows = []
    for later in ("sft", "dpo"):
        for subset, (d, lo, hi) in diffs.items():
            rows.append({"claim": "alignment raises kurtosis", "scope": f"gemma-3-270m base -> {later}, {subset}",
                         "ours": d, "low": lo, "high": hi, "n": 50, "verdict": "x"})
    return pd.DataFrame(rows)


def test_alignment_sentence_follows_the_intervals():
    up = F.alignment_sentence(_align({"en-de": (5, 1, 9), "si-en": (2, 0.5, 4)}))
    assert "rose on all 2 subsets" in up and "En-De +5.00 [1.00, 9.00]" in up
    down = F.alignment_sentence(_align({"en-de": (-5, -9, -1), "si-en": (-2, -4, -0.5)}))
    assert "fell on all 2 subsets, against the paper" in down and "rose" not in down
    mixed = F.alignment_sentence(_align({"en-de": (5, 1, 9), "si-en": (0.3, -1, 2)}))
    assert "rose on 1, did not move distinguishably on 1 of 2 subsets" in mixed
    none = F.alignment_sentence(pd.DataFrame({"claim": ["alignment raises kurtosis"] * 2,
                                              "scope": ["gemma-3-270m base -> sft, en-de", "gemma-3-270m base -> dpo, en-de"],
                                              "ours": np.nan, "low": np.nan, "high": np.nan, "n": 0,
                                              "verdict": "not run"}))
    assert "SFT stage has not been scored" in none and "DPO stage has not been scored" in none


def _kr(p, lo, hi):
    return pd.DataFrame({"scope": ["all cells"], "n_cells": [12], "pearson": [p], "pearson_low": [lo],
                         "pearson_high": [hi], "spearman": [p], "spearman_low": [lo], "spearman_high": [hi],
                         "paper_pearson": [-0.60]})


def test_kurtosis_r_sentence_direction():
    neg = F.kurtosis_r_sentence(_kr(-0.55, -0.8, -0.2))
    assert "negative, as in the paper" in neg and "-0.55 [-0.80, -0.20]" in neg and "12 cells" in neg
    pos = F.kurtosis_r_sentence(_kr(0.4, 0.1, 0.7))
    assert "positive, unlike the paper" in pos
    flat = F.kurtosis_r_sentence(_kr(-0.2, -0.6, 0.3))
    assert "not distinguishable from zero" in flat and "as in the paper" not in flat
    undefined = F.kurtosis_r_sentence(_kr(np.nan, np.nan, np.nan))
    assert "undefined" in undefined


def _mit_claims(verdicts, criterion="r"):
    return pd.DataFrame({"claim": "score range is the best mitigation", "criterion": criterion,
                         "scope": [f"j{i}, chat, en-de" for i in range(len(verdicts))],
                         "verdict": verdicts, "detail": "highest r: range 1-5 (0.3)"})


def test_mitigation_sentence_counts_the_winners():
    s = F.mitigation_sentence(_mit_claims(["supported", "supported"]))
    assert "the highest Pearson r with the human scores in all the 2 cells compared, as in the paper." in s
    assert "in the 1 cell compared, as in the paper." in F.mitigation_sentence(_mit_claims(["supported"]))
    assert "none of the 2" in F.mitigation_sentence(_mit_claims(["contradicted", "contradicted"]))
    mixed = F.mitigation_sentence(_mit_claims(["supported (point estimates; the runner-up lies inside the range's "
                                               "interval)", "contradicted"]))
    assert "in 1 of the 2 cells compared (1 of them by less than the winner's 95 % interval)" in mixed
    k = F.mitigation_sentence(_mit_claims(["contradicted"], criterion="kurtosis"))
    assert "the lowest kurtosis in none of the 1 cell compared" in k and "Pearson" not in k
    assert "not compared" in F.mitigation_sentence(pd.DataFrame({"claim": []}))


def test_mitigation_r_sentence_reads_each_direction():
    mit = pd.DataFrame({"judge": "j", "form": "chat", "subset": "en-de", "scope": "range items",
                        "method": ["baseline", "range 1-5", "temperature T=1.3"],
                        "method_family": ["baseline", "range", "temperature"], "n_items": 50,
                        "kurtosis": [10.0, 2.0, 12.0], "kurtosis_low": [5.0, 1.0, 6.0], "kurtosis_high": [20.0, 3, 20],
                        "pearson_r": [0.1, 0.3, 0.05], "pearson_r_low": [0.0, 0.1, -0.1],
                        "pearson_r_high": [0.2, 0.5, 0.2]})
    s = F.mitigation_r_sentence(mit, "j", "chat", "en-de")
    assert "range 1-5: kurtosis 2.00 (lower), r 0.30 (higher)" in s
    assert "temperature T=1.3: kurtosis 12.00 (higher), r 0.05 (lower)" in s


def _res(rows):
    return pd.DataFrame({"claim": "high-resource pairs more biased", "scope": [r[0] for r in rows],
                         "ours": [r[1] for r in rows], "low": [r[2] for r in rows], "high": [r[3] for r in rows]})


def test_resource_sentence_direction():
    assert "as in the paper" in F.resource_sentence(_res([("a, chat", 3, 1, 5), ("b, chat", 2, 0.5, 4)]))
    assert "against the paper" in F.resource_sentence(_res([("a, chat", -3, -5, -1)]))
    mixed = F.resource_sentence(_res([("a, chat", 3, 1, 5), ("b, chat", 0.1, -2, 2)]))
    assert "higher for 1, the lower for 0, and not distinguishable for 1 of 2" in mixed


def _ag(p, within):
    return pd.DataFrame({"judge": ["j"], "form": ["chat"], "n_items": [50], "n_samples": [500], "chi2_p": [p],
                         "share_within_95": [within], "valid_rate_sampled_first": [0.9],
                         "valid_rate_sampled_leading": [0.8], "valid_mass_exact": [0.81]})


def test_agreement_sentence_fit_or_not():
    assert "the samples fit the exact distribution (chi-square p = 0.400)" in F.agreement_sentence(_ag(0.4, 0.94))
    bad = F.agreement_sentence(_ag(1e-6, 0.6))
    assert "do not fit" in bad and "60 % of items" in bad
    assert "too few valid samples" in F.agreement_sentence(_ag(np.nan, np.nan))


def test_valid_sentence_counts_every_status():
    vo = pd.DataFrame({"judge": ["a", "b"], "form": ["chat", "chat"], "source": "sampled", "n_outputs": [100, 100],
                       "n_valid": [80, 20], "n_clipped_low": [0, 1], "n_clipped_high": [5, 0],
                       "n_non_numeric": [15, 70], "n_empty": [0, 9], "valid_rate": [0.85, 0.21],
                       "example_non_numeric": ["Good", None]})
    s = F.valid_sentence(vo)
    assert s.startswith("The lowest valid rate is b's (chat form): 21.0 %")
    assert "**a** (chat): 85 of 100 outputs (85.0 %) held a number (5 of them clipped" in s
    assert "70 held none and 9 were empty" in s
    flipped = F.valid_sentence(vo.assign(valid_rate=[0.1, 0.9]))
    assert flipped.startswith("The lowest valid rate is a's")


def test_bias_sentence():
    bias = pd.DataFrame({"judge": ["j"], "form": ["chat"], "subset": ["en-de"], "lo": [0], "hi": [10], "n_items": [50],
                         "kurtosis": [12.3], "kurtosis_low": [4.0], "kurtosis_high": [30.0], "kurtosis_single": [3.0],
                         "kurtosis_single_low": [1.0], "kurtosis_single_high": [6.0], "pearson_r": [0.1],
                         "pearson_r_low": [-0.1], "pearson_r_high": [0.3], "modal_share": [0.62], "modal_score": [8.0],
                         "valid_rate": [0.973]})
    s = F.bias_sentence(bias, "j", "chat", "en-de")
    assert "kurtosis of 12.30 [4.00, 30.00]" in s and "62 % of its items score 8.0" in s and "97.3 %" in s
    assert "has not been scored on Si-En" in F.bias_sentence(bias, "j", "chat", "si-en")
