"""Self-J judge training: the self-distillation loss by hand, labels per variant, and a tiny live LoRA run."""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

from conftest import require
from judgelab.experiments.self_judge import training as tr

torch = pytest.importorskip("torch")


def test_paper_settings():
    c = tr.PAPER_TRAIN
    assert (c.lora_r, c.lora_alpha, c.lora_dropout, c.lr, c.epochs) == (16, 16, 0.05, 3e-4, 2.0)
    assert c.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj")
    assert (tr.VARIANTS["self_j"].ce_student, tr.VARIANTS["self_j"].kl) == (0.3, 2.0)
    assert tr.VARIANTS["no_distill"].kl == 0.0


def test_loss_by_hand():
    # two classes; teacher logits (0, log 3) -> p_t = (1/4, 3/4); student (0, 0) -> p_s = (1/2, 1/2)
    t = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    s = torch.tensor([[0.0, 0.0]], requires_grad=True)
    loss, parts = tr.self_distillation_loss(t, s, [1])
    ce_t, ce_s = -math.log(0.75), math.log(2.0)
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert parts["ce_teacher"] == pytest.approx(ce_t) and parts["ce_student"] == pytest.approx(ce_s)
    assert parts["kl"] == pytest.approx(kl)  # KL(teacher || student), not the reverse
    assert float(loss.detach()) == pytest.approx(ce_t + 0.3 * ce_s + 2 * kl)
    # the teacher is detached inside the KL: its gradient is that of its cross-entropy alone
    loss.backward()
    t2 = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    torch.nn.functional.cross_entropy(t2, torch.tensor([1])).backward()
    assert torch.allclose(t.grad, t2.grad)
    # equal distributions: no KL
    _, same = tr.self_distillation_loss(s.detach(), s.detach(), [0])
    assert same["kl"] == pytest.approx(0.0, abs=1e-7)


def test_kl_over_digits_renormalises_to_the_digit_tokens():
    t = torch.tensor([[5.0, 0.0, math.log(3.0), 9.0]])
    s = torch.tensor([[-5.0, 0.0, 0.0, 1.0]])
    _, parts = tr.self_distillation_loss(t, s, [1], digit_ids=[1, 2], kl_over="digits")
    kl = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)  # the example above, on tokens 1 and 2
    assert parts["kl"] == pytest.approx(kl)
    _, full = tr.self_distillation_loss(t, s, [1])
    assert full["kl"] != pytest.approx(kl)
    with pytest.raises(ValueError, match="digit token ids"):
        tr.self_distillation_loss(t, s, [1], kl_over="digits")
    with pytest.raises(ValueError, match="kl_over"):
        tr.self_distillation_loss(t, s, [1], kl_over="top")


def test_variant_labels():
    labels = pd.DataFrame({"combined_mean": [4.4, 4.6, np.nan], "cosine": [1.0, -1.0, 0.0],
                           "self_eval": [8.51, np.nan, 0.2]})
    assert tr.variant_labels(labels, tr.VARIANTS["self_j"]).tolist() == [4, 5, pd.NA]
    assert tr.variant_labels(labels, tr.VARIANTS["cosine_only"]).tolist() == [9, 0, 4]  # 4.5 rounds to even
    assert tr.variant_labels(labels, tr.VARIANTS["selfeval_only"]).tolist() == [9, pd.NA, 0]
    with pytest.raises(ValueError, match="combined_product"):
        tr.variant_labels(labels, tr.VARIANTS["self_j"], combination="product")


@pytest.fixture(scope="module")
def smollm2_tf():
    from judgelab.models import get_model
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry("smollm2-135m-instruct")
    require(entry.offline_available(), f"offline weights not installed: {entry.pip}")
    torch.set_num_threads(1)
    return get_model("zoo:smollm2-135m-instruct", device="cpu")


def test_examples_drop_unlabelled_answers_and_use_the_digit_token(smollm2_tf):
    ex = tr.build_examples(smollm2_tf, ["Q1", "Q2"], ["A1", "A2"], ["R1", "R2"], [7, pd.NA])
    assert ex.n_dropped == 1 and len(ex.targets) == 1
    assert smollm2_tf.tokenizer.decode([ex.targets[0]]) == "7"
    assert len(ex.teacher[0]) > len(ex.student[0])  # the reference block is in the teacher's prompt only
    with pytest.raises(ValueError, match="not a digit"):
        tr.build_examples(smollm2_tf, ["Q"], ["A"], ["R"], [12])


def test_tiny_live_training_moves_the_judge_toward_the_label(smollm2_tf, tmp_path):
    from dataclasses import replace

    rows = pd.DataFrame({"instruction": ["Add 2 and 2.", "Name a fruit."], "answer": ["4", "Apple"],
                         "reference": ["4", "Banana"], "combined_mean": [9.0, 9.0], "cosine": [1.0, 1.0],
                         "self_eval": [9.0, 9.0]})
    cfg = replace(tr.PAPER_TRAIN, epochs=3.0, batch_size=2, micro_batch_size=2, lr=3e-3)  # 3 steps
    t0 = time.process_time()
    meta = tr.train_variant(smollm2_tf, rows, "self_j", tmp_path, config=cfg, progress=False)
    assert time.process_time() - t0 < 60
    path = tr.adapter_path(tmp_path, smollm2_tf.name, "self_j")
    log = pd.read_csv(path / "training_log.csv")
    assert len(log) == 3 and log["loss"].iloc[-1] < log["loss"].iloc[0]
    assert meta["n_examples"] == 2 and meta["steps"] == 3 and len(meta["adapter_sha256"]) == 64
    # a rerun finds the saved adapter and trains nothing
    again = tr.train_variant(smollm2_tf, rows, "self_j", tmp_path, config=cfg, progress=False)
    assert again["adapter_sha256"] == meta["adapter_sha256"]
    judge = tr.merged_judge(smollm2_tf, path, meta)
    assert judge.fingerprint["adapter_sha256"] == meta["adapter_sha256"]
    from judgelab.experiments.self_judge import selfeval as sev

    before = sev.self_eval_scores(smollm2_tf, ["Add 2 and 2."], ["4"])["p9"][0]
    after = sev.self_eval_scores(judge, ["Add 2 and 2."], ["4"])["p9"][0]
    assert after > before  # the student prompt, trained toward 9


def test_a_variant_stopped_midway_resumes_where_it_stopped(smollm2_tf, tmp_path):
    """A judge that trains for hours on a CPU outlives a session: killed after step 2 of 4 (a checkpoint every
    step), the rerun starts at step 3 and ends with the uninterrupted run's losses and weights."""
    from dataclasses import replace

    from judgelab.experiments.train_loop import TrainingInterrupted

    rows = pd.DataFrame({"instruction": ["Add 2 and 2.", "Name a fruit.", "Say hi.", "Count to 3."],
                         "answer": ["4", "Apple", "Hi", "1 2 3"], "reference": ["4", "Banana", "Hello", "1, 2, 3"],
                         "combined_mean": [9.0, 2.0, 7.0, 8.0], "cosine": [1.0, 0.2, 0.7, 0.9],
                         "self_eval": [9.0, 2.0, 7.0, 8.0]})
    cfg = replace(tr.PAPER_TRAIN, epochs=2.0, batch_size=2, micro_batch_size=1, lr=3e-3)  # 4 steps
    whole = tr.train_variant(smollm2_tf, rows, "self_j", tmp_path / "whole", config=cfg, progress=False)

    def stop_after_two(step):
        if step == 2:
            raise TrainingInterrupted("killed")

    with pytest.raises(TrainingInterrupted):
        tr.train_variant(smollm2_tf, rows, "self_j", tmp_path / "split", config=cfg, progress=False,
                         checkpoint_seconds=0.0, on_step=stop_after_two)
    path = tr.adapter_path(tmp_path / "split", smollm2_tf.name, "self_j")
    assert not tr.adapter_done(path) and (path.parent / "self_j.checkpoint" / "state.pt").is_file()
    seen = []
    split = tr.train_variant(smollm2_tf, rows, "self_j", tmp_path / "split", config=cfg, progress=False,
                             checkpoint_seconds=0.0, on_step=seen.append)
    assert seen == [3, 4]  # resumed at step 3
    assert not (path.parent / "self_j.checkpoint").exists()  # spent once the adapter is saved
    a = pd.read_csv(tr.adapter_path(tmp_path / "whole", smollm2_tf.name, "self_j") / "training_log.csv")
    b = pd.read_csv(path / "training_log.csv")
    assert list(b["step"]) == [1, 2, 3, 4]
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=1e-5)
    assert split["steps"] == whole["steps"] == 4
    # a checkpoint made on other labels is refused, not silently resumed
    with pytest.raises(TrainingInterrupted):
        tr.train_variant(smollm2_tf, rows, "self_j", tmp_path / "other", config=cfg, progress=False,
                         checkpoint_seconds=0.0, on_step=stop_after_two)
    with pytest.raises(ValueError, match="other training settings or data"):
        tr.train_variant(smollm2_tf, rows.assign(combined_mean=[1.0, 1.0, 1.0, 1.0]), "self_j", tmp_path / "other",
                         config=cfg, progress=False)


def test_examples_longer_than_the_cap_are_left_out_and_counted(smollm2_tf):
    long_ref = "word " * 600
    ex = tr.build_examples(smollm2_tf, ["Q1", "Q2", "Q3"], ["A1", "A2", "A3"], ["R1", long_ref, "R3"], [3, 4, pd.NA],
                           max_tokens=300)
    assert len(ex.targets) == 1 and ex.n_too_long == 1 and ex.n_dropped == 1
    assert max(len(t) for t in ex.teacher) <= 300
    whole = tr.build_examples(smollm2_tf, ["Q1", "Q2"], ["A1", "A2"], ["R1", long_ref], [3, 4])
    assert len(whole.targets) == 2 and whole.n_too_long == 0
