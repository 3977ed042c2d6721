"""Self-Judge scoring: the paper's prompt verbatim, the expected-digit score, cosine, combined scores.

Hand-checked values throughout; each is chosen so that a plausible wrong implementation (no
renormalisation, an invalid answer scored 0, unnormalised embeddings, a rank that ignores ties) fails.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from conftest import require
from judgelab.models.base import GenerationConfig, Model, OptionProbs
from judgelab.paths import file_sha256
from judgelab.prompts import ye2024
from judgelab.experiments.self_judge import embedding, selfeval

# The issue's text of judge.py's template_w_ref, typed independently of the module.
ISSUE_TEMPLATE = ("Please act as a precise judge and evaluate the quality of the answer to question. Rate the answer "
                  "from 0 to 9, where a higher value means a better answer. Please refer to the reference answer to "
                  "make your judgement. Respond with an integer between 0 and 9. \n\n[Question]\n{instruction}\n\n"
                  "[Reference]\n{reference}\n\n[Answer]\n{input}")


# --- prompt -----------------------------------------------------------------------------------------------
def test_templates_are_verbatim():
    assert ye2024.TEMPLATE_WITH_REFERENCE == ISSUE_TEMPLATE
    assert "between 0 and 9. \n\n[Question]" in ye2024.TEMPLATE_WITH_REFERENCE  # the literal " \n\n"
    # judge.py's reference-free template also says "Please respond" (not just the reference cut out)
    assert ye2024.TEMPLATE_WITHOUT_REFERENCE == (
        "Please act as a precise judge and evaluate the quality of the answer to question. Rate the answer from 0 "
        "to 9, where a higher value means a better answer. Please respond with an integer between 0 and 9. "
        "\n\n[Question]\n{instruction}\n\n[Answer]\n{input}")
    assert ye2024.DIGITS == ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9")


def test_judge_prompt_fills_and_keeps_braces():
    p = ye2024.judge_prompt("Q {x}?", "A {0}", "R {}")
    assert p.endswith("Respond with an integer between 0 and 9. \n\n[Question]\nQ {x}?\n\n[Reference]\nR {}\n\n[Answer]\nA {0}")
    free = ye2024.judge_prompt("Q", "A")
    assert "[Reference]" not in free and free.endswith("0 and 9. \n\n[Question]\nQ\n\n[Answer]\nA")
    assert ye2024.chat("Q", "A", "R") == [{"role": "user", "content": ye2024.judge_prompt("Q", "A", "R")}]
    with pytest.raises(ValueError, match="reference is empty"):
        ye2024.judge_prompt("Q", "A", "  ")
    with pytest.raises(TypeError, match="answer must be text"):
        ye2024.judge_prompt("Q", None)


# --- expected digit ------------------------------------------------------------------------------------------
def op(**mass) -> OptionProbs:
    return OptionProbs(ye2024.DIGITS, tuple(float(mass.get(f"d{d}", 0.0)) for d in range(10)))


def test_expected_digit_renormalises_over_the_digits():
    # 0.2 on "3" and 0.2 on "7", 0.6 elsewhere: renormalised 0.5/0.5 -> 5 (without renormalising: 2)
    assert selfeval.expected_digit(op(d3=0.2, d7=0.2)) == pytest.approx(5.0)
    assert selfeval.expected_digit(op(d9=1.0)) == pytest.approx(9.0)
    assert selfeval.expected_digit(op(d0=0.5)) == 0.0  # a real 0 is 0
    assert selfeval.expected_digit(op(d1=0.1, d2=0.3)) == pytest.approx((1 * 0.1 + 2 * 0.3) / 0.4)


def test_no_digit_mass_is_invalid_not_zero():
    assert math.isnan(selfeval.expected_digit(op()))
    table = selfeval.self_eval_table([op(), op(d4=0.5)])
    assert table["valid"].tolist() == [False, True]
    assert "no probability on any option" in table["invalid_reason"][0]
    assert math.isnan(table["score"][0]) and table["score"][1] == pytest.approx(4.0)
    assert table["digit_mass"][1] == pytest.approx(0.5) and table["p4"][1] == pytest.approx(1.0)


def test_expected_digit_refuses_other_options():
    with pytest.raises(ValueError, match="expected the options"):
        selfeval.expected_digit(OptionProbs(("1", "2"), (0.5, 0.5)))
    shuffled = tuple(reversed(ye2024.DIGITS))
    with pytest.raises(ValueError, match="expected the options"):
        selfeval.expected_digit(OptionProbs(shuffled, (0.1,) * 10))


class ScriptedJudge(Model):
    """Answers option_probs from a list, recording the prompts it was given."""

    name = "scripted"

    def __init__(self, answers):
        self.answers, self.prompts, self.options = list(answers), [], None

    @property
    def fingerprint(self):
        return {"name": "scripted"}

    def generate(self, prompts, config=GenerationConfig()):
        raise AssertionError("self-evaluation must not generate")

    def option_probs(self, prompts, options):
        self.prompts.extend(prompts)
        self.options = tuple(options)
        return [self.answers.pop(0) for _ in prompts]


def test_self_eval_scores_goes_through_the_model_interface():
    judge = ScriptedJudge([op(d8=0.9), op()])
    table = selfeval.self_eval_scores(judge, ["Q1", "Q2"], ["A1", "A2"], ["R1", "R2"])
    assert judge.options == ye2024.DIGITS
    assert judge.prompts == [ye2024.chat("Q1", "A1", "R1"), ye2024.chat("Q2", "A2", "R2")]
    assert table["score"][0] == pytest.approx(8.0) and math.isnan(table["score"][1])
    free = ScriptedJudge([op(d2=1.0)])
    selfeval.self_eval_scores(free, ["Q"], ["A"], as_chat=False)
    assert free.prompts == [ye2024.judge_prompt("Q", "A")]
    with pytest.raises(ValueError, match="equally long"):
        selfeval.self_eval_scores(ScriptedJudge([]), ["Q"], ["A", "B"])


def test_self_eval_scores_record_and_replay_through_the_store(tmp_path):
    from judgelab.store import CallStore, StoredModel

    store = CallStore(tmp_path / "calls.sqlite")
    live = StoredModel(ScriptedJudge([op(d8=0.9), op()]), store, progress=False)
    first = selfeval.self_eval_scores(live, ["Q1", "Q2"], ["A1", "A2"], ["R1", "R2"])
    replay = StoredModel(None, store, replay=True, name="scripted", progress=False)
    again = selfeval.self_eval_scores(replay, ["Q1", "Q2"], ["A1", "A2"], ["R1", "R2"])
    assert again.equals(first) and again["valid"].tolist() == [True, False]  # the invalid answer survives storage


# --- cosine ---------------------------------------------------------------------------------------------------
class TableEmbedder:
    def __init__(self, vectors):
        self.vectors = vectors

    def encode(self, texts, **_):
        return np.array([self.vectors[t] for t in texts], dtype=float)


def test_cosine_normalises_whatever_the_embedder_returns():
    emb = TableEmbedder({"a": [1, 0], "b": [1, 1], "c": [2, 0], "d": [3, 0], "e": [-5, 0], "z": [0, 0]})
    got = selfeval.cosine_scores(["a", "c", "c", "a"], ["b", "d", "e", "z"], embedder=emb)
    assert got[:3] == pytest.approx([1 / math.sqrt(2), 1.0, -1.0])
    assert math.isnan(got[3])  # a zero vector has no direction
    with pytest.raises(ValueError, match="2 answers but 1 references"):
        selfeval.cosine_scores(["a", "b"], ["a"], embedder=emb)


@pytest.fixture(scope="module")
def minilm():
    try:
        embedding.package_zip()
    except embedding.EmbeddingError as err:
        require(False, str(err))
    return embedding.load_embedder()


def test_minilm_is_the_pinned_model_and_orders_similarity(minilm):
    folder = embedding.model_path()
    assert file_sha256(folder / "model.safetensors") == embedding.FINGERPRINT["weights_sha256"]
    dimension = getattr(minilm, "get_embedding_dimension", None) or minilm.get_sentence_embedding_dimension
    assert dimension() == 384 and minilm.max_seq_length == 256
    cos = selfeval.cosine_scores(
        ["A man is eating food.", "A man is eating food.", "A man is eating food."],
        ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby."])
    assert cos[0] == pytest.approx(1.0, abs=1e-6)
    assert cos[1] == pytest.approx(0.7553, abs=2e-3)  # measured with this file (sha above), CPU float32
    assert cos[1] > 0.5 > 0.1 > cos[2]
    assert embedding.truncated(["short", "word " * 400], minilm) == [False, True]


# --- combined scores --------------------------------------------------------------------------------------
def test_combinations_by_hand():
    s, c = np.array([9.0, 0.0, 4.5, 9.0]), np.array([1.0, -1.0, 0.0, -0.5])
    assert selfeval.combine_mean(s, c) == pytest.approx([9.0, 0.0, 4.5, 9 * (1 + 0.25) / 2])
    assert selfeval.combine_product(s, c) == pytest.approx([9.0, 0.0, 0.0, 0.0])
    # ranks in [0, 1] with ties averaged: s -> [5/6, 0, 1/3, 5/6], c -> [1, 0, 2/3, 1/3]
    assert selfeval.combine_rank_mean(s, c) == pytest.approx(
        [9 * (5 / 6 + 1) / 2, 0.0, 9 * (1 / 3 + 2 / 3) / 2, 9 * (5 / 6 + 1 / 3) / 2])
    t = selfeval.combined_table(s, c)
    assert list(t.columns) == ["self_eval", "cosine", "combined_mean", "combined_product", "combined_rank_mean"]


def test_combinations_keep_nan_and_refuse_out_of_range():
    s, c = np.array([np.nan, 3.0, 6.0]), np.array([0.5, np.nan, 0.5])
    for name in selfeval.COMBINATIONS:
        got = selfeval.combined_scores(s, c, name)
        assert np.isnan(got[:2]).all() and np.isfinite(got[2]), name
    assert selfeval.combine_rank_mean(s, c)[2] == pytest.approx(4.5)  # the only finite pair: middle rank
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        selfeval.combine_mean([10.0], [0.5])
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        selfeval.combine_product([1.0], [1.5])
    with pytest.raises(ValueError, match="unknown combination"):
        selfeval.combined_scores([1.0], [0.5], "max")


# --- live -----------------------------------------------------------------------------------------------
def test_smollm2_self_evaluates_three_evaluation_answers(smollm2):
    from judgelab.data.self_judge import evaluation_answers

    rows = evaluation_answers().rows
    rows = rows.assign(size=rows["question"].str.len() + rows["response"].str.len() + rows["reference"].str.len())
    pick = rows.nsmallest(3, "size")
    t0 = time.perf_counter()
    with_ref = selfeval.self_eval_scores(smollm2, pick["question"].tolist(), pick["response"].tolist(),
                                         pick["reference"].tolist())
    free = selfeval.self_eval_scores(smollm2, pick["question"].tolist(), pick["response"].tolist())
    elapsed = time.perf_counter() - t0
    for table in (with_ref, free):
        assert len(table) == 3
        ok = table[table["valid"]]
        assert ((ok["score"] >= 0) & (ok["score"] <= 9)).all()
        assert ((ok["digit_mass"] > 0) & (ok["digit_mass"] <= 1 + 1e-4)).all()
        assert table.loc[~table["valid"], "score"].isna().all()
        p = table[[f"p{d}" for d in range(10)]].to_numpy()
        assert np.allclose(p[table["valid"]].sum(axis=1), 1.0)
    # the reference changes the judge's distribution: the two prompts are different inputs
    assert not np.allclose(with_ref["score"], free["score"], equal_nan=True)
    assert elapsed < 60, f"6 self-evaluations took {elapsed:.0f} s"
