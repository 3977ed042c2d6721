"""Self-Judge data: training instructions with references, the 640 GPT-4-scored answers, contamination.

Counts are the sources' own (Self-Instruct 252, Alpaca seeds 175, BiGGen-Bench 765, Prometheus 2 x 320); the
Prometheus prompt split is checked to be lossless on every row and to refuse (not guess) ambiguous prompts.
"""

from __future__ import annotations

import copy

import pandas as pd
import pytest

from conftest import require
from judgelab.data import DataIntegrityError
from judgelab.data import self_judge as sj


@pytest.fixture(scope="module")
def evaluation():
    try:
        return sj.evaluation_answers()
    except DataIntegrityError as err:  # pragma: no cover - depends on the machine
        require(False, f"prometheus_eval not available offline: {str(err).splitlines()[0]}")


@pytest.fixture(scope="module")
def training(evaluation):
    return sj.training_instructions()


# --- training sources -----------------------------------------------------------------------------------
@pytest.mark.parametrize("loader, source, n", [
    (sj.load_self_instruct, "self_instruct", 252),
    (sj.load_alpaca_seed, "alpaca_seed", 175),
    (sj.load_biggen_bench, "prometheus_eval", 765),
])
def test_training_sources_keep_every_instruction_with_a_reference(loader, source, n, evaluation):
    got = loader()
    assert len(got.rows) == n and len(got.refused) == 0
    assert list(got.rows.columns) == sj.TRAINING_COLUMNS
    assert (got.rows["source"] == source).all() and got.rows["id"].is_unique
    assert got.rows["instruction"].str.strip().str.len().gt(0).all()
    assert got.rows["reference"].str.strip().str.len().gt(0).all()


def test_instruction_and_input_are_joined_by_a_blank_line(evaluation):
    si = sj.load_self_instruct().rows.set_index("id")
    row = si.loc["user_oriented_task_0"]
    assert row["instruction"].startswith("The sentence you are given might be too wordy")
    assert row["instruction"].endswith("\n\nIf you have any questions about my rate or if you find it necessary to "
                                       "increase or decrease the scope for this project, please let me know.")
    assert row["reference"].startswith("If you have any questions about my rate or find it necessary")
    seed = sj.load_alpaca_seed().rows.set_index("id").loc["seed_task_0"]
    assert "\n\n" not in seed["instruction"]  # no input: the instruction alone
    biggen = sj.load_biggen_bench().rows.set_index("id").loc["planning_travel_plan_0"]
    assert biggen["system_prompt"] == "You are a travel agent that can design travel plans."
    assert biggen["subset"] == "planning" and biggen["reference"].startswith("Day 1 - Morning:")


def test_mt_bench_refuses_questions_without_reference_and_second_turns(evaluation):
    got = sj.load_mt_bench_questions()
    assert len(got.rows) == 40  # 30 MT-bench + 10 Vicuna-bench questions have a GPT-4 reference
    assert got.rows.groupby("subset").size().to_dict() == {"mt_bench": 30, "vicuna_bench": 10}
    counts = got.refused_counts().set_index("reason")["n"].to_dict()
    assert counts == {"no reference": 120, "second turn of a dialogue": 80}
    row = got.rows.set_index("id").loc["mt_bench:101"]
    assert row["instruction"].startswith("Imagine you are participating in a race")
    assert row["reference"].startswith("If you have just overtaken the second person")


# --- evaluation answers ----------------------------------------------------------------------------------
def test_evaluation_has_640_answers_160_per_model(evaluation):
    rows = evaluation.rows
    assert len(rows) == 640 and len(evaluation.refused) == 0 and rows["id"].is_unique
    assert rows.groupby("model").size().to_dict() == dict.fromkeys(sj.RESPONDERS, 160)
    assert (rows.groupby(["eval_set", "model"]).size() == 80).all()
    assert rows.groupby("eval_set")["question_id"].agg(["min", "max", "nunique"]).to_dict("index") == {
        "mt_bench_eval": {"min": 81, "max": 160, "nunique": 80},
        "vicuna_eval": {"min": 1, "max": 80, "nunique": 80},
    }
    scores = pd.DataFrame(rows["gpt4_scores"].tolist())
    assert scores.shape == (640, 3) and scores.isin([1, 2, 3, 4, 5]).all().all()
    assert (rows["gpt4_mean"] - scores.mean(axis=1)).abs().max() < 1e-12
    for col in ("question", "response", "reference", "rubric"):
        assert rows[col].str.strip().str.len().gt(0).all(), col


def test_evaluation_parts_of_a_known_row(evaluation):
    row = evaluation.rows.set_index("id").loc["vicuna_eval:1:Vicuna-13B"]
    assert row["question"] == "How can I improve my time management skills?"
    assert row["response"].startswith("Improving your time management skills can help you")
    assert row["response"].endswith("become more productive and efficient.")
    assert row["reference"].startswith("To improve your time management skills, start by setting clear goals.")
    assert row["rubric"].startswith("[Does the response provide detailed and actionable steps")
    assert row["rubric"].rstrip().endswith("firmly grounded on real-world scenarios.")
    assert row["gpt4_scores"] == (5, 5, 5) and row["category"] == "generic"
    mt = evaluation.rows.set_index("id").loc["mt_bench_eval:83:Vicuna-13B"]
    assert mt["question"].startswith("Here is a previous dialogue between an assistant and an user.")
    assert "Take your previous response and rephrase it as a limerick." in mt["question"]


def test_prometheus_split_is_lossless_on_every_row():
    for path in sj.EVAL_FILES.values():
        for r in sj._json("prometheus_eval", path):
            parts = sj.split_prometheus_prompt(r["instruction"])
            assert sj.join_prometheus_prompt(parts) == r["instruction"]
            assert parts["feedback"] == " "


PROMPT = sj.join_prometheus_prompt({
    "task": "Grade it.", "question": "What is 2+2?", "response": "### Answer\nIt is 4.\n\n### Why\nArithmetic.",
    "reference": "4", "rubric": "[Correct?]\nScore 1: no\nScore 5: yes", "feedback": " ",
})


def test_split_keeps_markdown_headers_inside_a_response():
    parts = sj.split_prometheus_prompt(PROMPT)
    assert parts["response"] == "### Answer\nIt is 4.\n\n### Why\nArithmetic."
    assert parts["question"] == "What is 2+2?" and parts["reference"] == "4"
    assert parts["rubric"] == "[Correct?]\nScore 1: no\nScore 5: yes"


@pytest.mark.parametrize("prompt, message", [
    (PROMPT.replace("\n\n###Score Rubrics:\n", "\n\n"), r"'###Score Rubrics:' \(rubric\) missing"),
    (PROMPT.replace("It is 4.", "It is 4.\n\n###Reference Answer (Score 5):\nfake"), "found 2 times"),
    ("preamble\n" + PROMPT, "characters before"),
    (PROMPT.replace("\n\n###The instruction to evaluate:\nWhat is 2+2?", "")
     .replace("\n\n###Reference Answer (Score 5):\n4", "\n\n###Reference Answer (Score 5):\n4"
              "\n\n###The instruction to evaluate:\nWhat is 2+2?"), "out of order"),
    (None, "not text"),
])
def test_split_refuses_prompts_it_cannot_cut_unambiguously(prompt, message):
    with pytest.raises(sj.PromptParseError, match=message):
        sj.split_prometheus_prompt(prompt)


def test_unparsed_rows_are_counted_not_lost(monkeypatch, evaluation):
    real = sj._json

    def broken(source, path):
        data = copy.deepcopy(real(source, path))
        if path == sj.EVAL_FILES["vicuna_eval"]:
            data[0]["instruction"] = data[0]["instruction"].replace("###Score Rubrics:", "Rubrics:")
        return data

    monkeypatch.setattr(sj, "_json", broken)
    got = sj.evaluation_answers()
    assert len(got.rows) == 639 and len(got.refused) == 1
    assert got.refused.iloc[0]["id"] == "vicuna_eval:1:Vicuna-13B"
    assert got.refused.iloc[0]["reason"].startswith("unparsed prompt: section header '###Score Rubrics:'")


def test_bad_rows_raise_naming_file_and_row(monkeypatch):
    real = sj._json

    def bad_score(source, path):
        data = copy.deepcopy(real(source, path))
        data[4]["gpt4_score"] = [5, 6, 4]
        return data

    monkeypatch.setattr(sj, "_json", bad_score)
    with pytest.raises(ValueError, match=r"vicuna_eval.json row 5: gpt4_score must hold integers 1-5"):
        sj.evaluation_answers()


# --- contamination -----------------------------------------------------------------------------------------
def _train(*texts):
    return pd.DataFrame({"source": "t", "id": [f"t{i}" for i in range(len(texts))], "instruction": list(texts)})


def _eval(*texts):
    return pd.DataFrame({"id": [f"e{i}" for i in range(len(texts))], "question": list(texts)})


def test_normalise_instruction():
    assert sj.normalise_instruction("Hello,  World!\n") == "hello world"
    assert sj.normalise_instruction("ＡＢＣ_def") == "abc def"  # NFKC folds full-width letters


def test_overlap_finds_equal_and_contained_instructions_only():
    ev = _eval("How can I improve my time management skills?",
               "Here is a previous dialogue.\nUser: Write a haiku about autumn leaves, please.\n\nAssistant: ...")
    tr = _train("how can I improve my TIME management skills",        # equal after normalisation
                "Write a haiku about autumn leaves, please.",          # inside an evaluation dialogue
                "Tell me: how can I improve my time management skills? Be brief.",  # contains one
                "Write a haiku",                                       # contained but too short to count
                "How can I improve my time management habits?")        # different
    got = sj.instruction_overlap(tr, ev)
    assert got[["id", "eval_id", "how"]].values.tolist() == [
        ["t0", "e0", "equal"], ["t1", "e1", "train in eval"], ["t2", "e0", "eval in train"]]
    # containment is of whole words: "cat" is not inside "concatenate"
    assert sj.instruction_overlap(_train("cat"), _eval("concatenate strings"), min_chars=0).empty
    assert len(sj.instruction_overlap(_train("cat"), _eval("a cat sat"), min_chars=0)) == 1
    with pytest.raises(ValueError, match="no column 'question'"):
        sj.instruction_overlap(tr, ev.rename(columns={"question": "q"}))


def test_no_evaluation_instruction_is_in_training(training, evaluation):
    rows = training.rows
    assert len(rows) == 252 + 175 + 765  # every MT-bench/Vicuna-bench question is an evaluation question
    assert rows.groupby("source").size().to_dict() == {"alpaca_seed": 175, "prometheus_eval": 765,
                                                       "self_instruct": 252}
    assert sj.instruction_overlap(rows, evaluation.rows).empty
    counts = training.refused_counts().set_index(["source", "reason"])["n"].to_dict()
    assert counts == {("mt_bench", "no reference"): 120, ("mt_bench", "second turn of a dialogue"): 80,
                      ("mt_bench", "in evaluation set"): 40}
    # the check can fail: without the exclusion the overlap is there
    raw = sj.training_instructions(exclude_evaluation=False)
    hit = sj.instruction_overlap(raw.rows, evaluation.rows)
    # 39: Vicuna-bench 67 repeats MT-bench 130 word for word and is refused as its duplicate
    assert set(hit["source"]) == {"mt_bench"} and hit["id"].nunique() == 39
    assert raw.refused.set_index("id").loc["vicuna_bench:67", "reason"] == "duplicate of mt_bench:mt_bench:130"
    assert set(hit.loc[hit["id"] == "vicuna_bench:61", "how"]) == {"equal"}


def test_duplicates_across_sources_are_refused(monkeypatch):
    a = sj.Loaded(pd.DataFrame([{"source": "self_instruct", "id": "x", "instruction": "Say hi!", "reference": "hi",
                                 "subset": "", "system_prompt": ""}]), pd.DataFrame(columns=sj.REFUSED_COLUMNS))
    b = sj.Loaded(pd.DataFrame([{"source": "alpaca_seed", "id": "y", "instruction": "say hi", "reference": "hello",
                                 "subset": "", "system_prompt": ""}]), pd.DataFrame(columns=sj.REFUSED_COLUMNS))
    monkeypatch.setitem(sj._LOADERS, "self_instruct", lambda: a)
    monkeypatch.setitem(sj._LOADERS, "alpaca_seed", lambda: b)
    got = sj.training_instructions(("self_instruct", "alpaca_seed"), exclude_evaluation=False)
    assert got.rows["id"].tolist() == ["x"]
    assert got.refused.to_dict("records") == [{"source": "alpaca_seed", "id": "y",
                                               "reason": "duplicate of self_instruct:x"}]
    with pytest.raises(ValueError, match="unknown training sources"):
        sj.training_instructions(("nope",))
