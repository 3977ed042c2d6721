"""Self-J policy answers: seeds, contamination, the train/held-out split, the ci profile live in llama.cpp."""

from __future__ import annotations

import time

import pandas as pd
import pytest

from conftest import require
from judgelab.data.self_judge import evaluation_answers, training_instructions
from judgelab.experiments.self_judge import policy as pol
from judgelab.experiments.self_judge import run as sjrun
from judgelab.models.base import GenerationConfig, Model
from judgelab.store import CallStore, StoredModel


class EchoPolicy(Model):
    """Answers with the seed it was given, so the tests see which seed each call carried."""

    name = "echo"

    def __init__(self):
        self.calls = []

    @property
    def fingerprint(self):
        return {"name": "echo"}

    def generate(self, prompts, config=GenerationConfig()):
        self.calls.append((prompts, config))
        return [f"seed {config.seed}" for _ in prompts]

    def option_probs(self, prompts, options):  # pragma: no cover - not used
        raise AssertionError


ROWS = pd.DataFrame({"source": ["a", "a", "b"], "id": ["1", "2", "1"],
                     "instruction": ["Say hi.", "Count to 3.", "Name a colour."],
                     "system_prompt": ["", "You count.", ""]})


def test_seeds_are_distinct_per_instruction_and_sample_and_stable():
    seeds = {(s, i, k): pol.sample_seed(s, i, k) for s, i in [("a", "1"), ("a", "2"), ("b", "1")] for k in range(4)}
    assert len(set(seeds.values())) == len(seeds)
    assert pol.sample_seed("a", "1", 0) == pol.sample_seed("a", "1", 0)
    assert pol.sample_seed("a", "1", 0, base=1) != pol.sample_seed("a", "1", 0)
    assert all(0 <= s < 2**31 for s in seeds.values())
    with pytest.raises(ValueError, match=">= 0"):
        pol.sample_seed("a", "1", -1)


def test_answer_messages_put_the_system_prompt_first():
    assert pol.answer_messages("Q") == [{"role": "user", "content": "Q"}]
    assert pol.answer_messages("Q", " Be brief. ") == [{"role": "system", "content": "Be brief."},
                                                       {"role": "user", "content": "Q"}]
    with pytest.raises(ValueError, match="non-empty"):
        pol.answer_messages("  ")


def test_generate_answers_one_call_per_instruction_and_sample_sample_major(tmp_path):
    echo = EchoPolicy()
    got = pol.generate_answers(echo, ROWS, [0, 1], GenerationConfig(max_new_tokens=4, temperature=0.7),
                               progress=False)
    assert len(echo.calls) == 6 and all(len(p) == 1 for p, _ in echo.calls)
    assert got["sample"].tolist() == [0, 0, 0, 1, 1, 1]  # every instruction's first sample first
    assert got["answer"].tolist() == [f"seed {s}" for s in got["seed"]]
    assert got["seed"].tolist() == [pol.sample_seed(s, i, k) for s, i, k in zip(got["source"], got["id"], got["sample"])]
    assert echo.calls[1][0][0][0] == {"role": "system", "content": "You count."}
    # through a store: each (instruction, sample) is its own call, labelled, and a rerun computes nothing
    store = CallStore(tmp_path / "s.sqlite")
    stored = StoredModel(EchoPolicy(), store, progress=False)
    first = pol.generate_answers(stored, ROWS, [0, 1], GenerationConfig(temperature=0.7), progress=False)
    assert store.count() == 6
    assert sorted(lab for _, _, lab in store.labels())[0] == "answer/a/1/0"
    again = StoredModel(None, store, replay=True, name="echo", progress=False)
    assert pol.generate_answers(again, ROWS, [0, 1], GenerationConfig(temperature=0.7), progress=False).equals(first)
    with pytest.raises(ValueError, match="temperature > 0"):
        pol.generate_answers(echo, ROWS, [0, 1], GenerationConfig(temperature=0.0), progress=False)


def test_empty_answers_are_counted_not_dropped():
    class Mute(EchoPolicy):
        def generate(self, prompts, config=GenerationConfig()):
            return ["  " for _ in prompts]

    got = pol.generate_answers(Mute(), ROWS, [0], GenerationConfig(temperature=0.7), progress=False)
    assert got["status"].tolist() == ["empty"] * 3
    summary = pol.answers_summary(got)
    assert summary.loc[0, "empty"] == 3 and summary.loc[0, "ok"] == 0


@pytest.fixture(scope="module")
def loaded():
    from judgelab.data import DataIntegrityError

    try:
        return training_instructions(), evaluation_answers().rows
    except DataIntegrityError as err:  # pragma: no cover
        require(False, f"data not available offline: {str(err).splitlines()[0]}")


def test_no_evaluation_instruction_is_selected_for_training(loaded):
    train_loaded, evaluation = loaded
    train, held = pol.split_instructions(train_loaded.rows, 400, 40, seed=0)
    assert len(train) == 400 and len(held) == 40
    assert not set(zip(train["source"], train["id"])) & set(zip(held["source"], held["id"]))
    pol.check_no_evaluation_overlap(pd.concat([train, held]), evaluation)  # does not raise
    assert train["reference"].str.strip().str.len().gt(0).all()
    # the guard is real: an evaluation question planted among the training rows is caught by its text
    planted = pd.concat([train.head(3), pd.DataFrame([{
        "source": "planted", "id": "x", "instruction": "  " + evaluation["question"].iloc[0].upper() + "!",
        "reference": "r", "subset": "", "system_prompt": ""}])], ignore_index=True)
    with pytest.raises(ValueError, match=r"1 training instructions overlap .*planted:x"):
        pol.check_no_evaluation_overlap(planted, evaluation)
    # instructions without a reference were refused, with a count per source
    counts = train_loaded.refused_counts()
    assert counts.loc[counts["reason"] == "no reference", "n"].sum() == 120


def test_split_does_not_depend_on_row_order(loaded):
    rows = loaded[0].rows
    a = pol.split_instructions(rows, 20, 5, seed=3)
    b = pol.split_instructions(rows.sample(frac=1, random_state=1), 20, 5, seed=3)
    assert a[0].equals(b[0]) and a[1].equals(b[1])
    assert not pol.split_instructions(rows, 20, 5, seed=4)[0].equals(a[0])
    with pytest.raises(ValueError, match="only"):
        pol.split_instructions(rows, len(rows), 1)


def test_profiles_and_live_switch(monkeypatch):
    assert set(sjrun.SELF_JUDGE_PROFILES) == {"ci", "book", "gpu", "api"}
    book = sjrun.SELF_JUDGE_PROFILES["book"]
    assert book.replay and book.n_train >= 400 and book.temperature > 0
    assert not sjrun.self_judge_profile("book", live=True).replay
    monkeypatch.setenv("JUDGELAB_LIVE", "1")
    assert not sjrun.self_judge_profile("book").replay
    with pytest.raises(ValueError, match="unknown self-judge profile"):
        sjrun.self_judge_profile("nope")
    with pytest.raises(ValueError, match="unknown self-judge stages"):
        sjrun.run_self_judge("ci", ["nope"])


def test_ci_answers_live_in_llama_cpp_and_replay(tmp_path, loaded):
    require(__import__("importlib").util.find_spec("llama_cpp") is not None, "llama-cpp-python not installed")
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry("smollm2-135m-instruct")
    require(entry.offline_available(), f"offline weights not installed: {entry.pip}")
    prof = sjrun.self_judge_profile("ci")
    t0 = time.process_time()
    train, held = sjrun.policy_answers(prof, tmp_path, progress=False)
    elapsed = time.process_time() - t0
    assert len(train) == prof.n_train * prof.train_samples and len(held) == prof.n_heldout * prof.best_of_n
    assert (train["status"] == "ok").all() and train["reference"].str.len().gt(0).all()
    # two samples of one instruction differ (own seeds), and the replay gives the same text
    pairs = train.pivot(index=["source", "id"], columns="sample", values="answer")
    assert (pairs[0] != pairs[1]).any()
    replay = sjrun.policy_answers(sjrun.SELF_JUDGE_PROFILES["ci"].__class__(**{
        **sjrun.SELF_JUDGE_PROFILES["ci"].__dict__, "replay": True}), tmp_path, progress=False)
    assert replay[0].equals(train) and replay[1].equals(held)
    # a live rerun reproduces the samples from the seeds (a fresh store, so computed again)
    again = sjrun.policy_answers(prof, tmp_path / "again", progress=False)[0]
    assert again["answer"].tolist() == train["answer"].tolist()
    assert elapsed < 60, f"ci answers took {elapsed:.0f} s of CPU"


def test_cli_refuses_an_unknown_stage_as_a_usage_error(capsys, tmp_path):
    from judgelab.cli import main

    assert main(["run", "self-judge", "--profile", "ci", "--stage", "nope", "--results-dir", str(tmp_path)]) == 2
    assert "unknown self-judge stages ['nope']" in capsys.readouterr().err
    assert main(["run", "self-judge", "--profile", "book", "--stage", "speed"]) == 0  # replay: the committed table
