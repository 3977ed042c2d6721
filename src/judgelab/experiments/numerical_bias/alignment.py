"""An alignment run we control: gemma-3-270m (base) -> instruction tuning (SFT) -> preference tuning (DPO).

Sato et al. (2026) compare vendors' base and instruct models, which differ in more than alignment. Here one
base model is aligned in two stages on public data, and each stage is kept as a judge, so the numerical-bias
runner (:mod:`judgelab.experiments.numerical_bias.scoring`) can score ``base``, ``sft`` and ``dpo`` with
the same prompts: same base weights, same data, only the alignment stage changes.

**Chat template.** The zoo's ``gemma-3-270m`` is the *base* model: its tokenizer carries no chat template
(``tokenizer.chat_template is None``; recorded in the meta as ``tokenizer_had_chat_template``). The stages
are trained on, and judge with, Gemma 3's official template (:data:`GEMMA3_CHAT_TEMPLATE`, the one of
``google/gemma-3-*-it``): ``<bos><start_of_turn>user\\n{text}<end_of_turn>\\n<start_of_turn>model\\n``. A
trained answer closes with ``<eos>`` (:data:`ANSWER_END`), not the template's ``<end_of_turn>``: the base
model has never produced the latter (P ~ 1e-15 where answers end) and LoRA could not teach it in one epoch
(measured, see the book profile); ``<eos>``, the base model's own end of text, it learned within a few steps.
Generation stops at either. The base stage has no chat: it is judged on completion prompts only
(:func:`judgelab.models.base.messages_to_text`).

**Data** (:mod:`judgelab.data.alignment`). SFT: Alpaca's 175 seed tasks and Self-Instruct's 252 user-oriented
instructions with human gold outputs; ``n_sft_eval`` of them are held out (loss and generation after each
stage). DPO: AlpacaEval 1 outputs of 10 models against text-davinci-003 with GPT-4's pairwise preference,
one pair per instruction, none of them an SFT instruction; the first ``n_dpo_eval`` instructions are held out.
An example longer than ``max_length`` tokens (prompt + answer + end of turn, chat format) is not used (for a
pair: either side too long); the counts are in the meta. Nothing is truncated, so every preference label is
about the texts the model sees.

**Training** (peft LoRA and a short loop; TRL is not installed here). Each step is ``batch_size`` examples
one sequence at a time (gradients accumulated), AdamW, constant learning rate, gradient clipping. The
vocabulary has 262,144 tokens, so the output layer is applied only where a loss is taken: the decoder's
hidden states at the answer positions go through ``lm_head``, nothing else (:func:`answer_logprobs`).

* SFT: cross-entropy on the answer tokens and the closing token (counted ``end_token_weight`` times: 5 in
  the book profile), averaged over the batch's answer tokens; the prompt carries no loss.
* DPO (Rafailov et al. 2023; TRL's ``loss_type="sigmoid"``): ``-log sigmoid(beta * ((log pi(c) - log ref(c))
  - (log pi(r) - log ref(r))))`` with log-probabilities summed over the answer tokens, ``beta = 0.1``, the
  policy a new LoRA adapter on the SFT-merged model, the reference the SFT-merged model itself. Reference
  log-probabilities are computed once, before training, and kept in the checkpoint folder.

**Resumable.** Every ``checkpoint_seconds`` (and at the last step) the adapter weights, optimiser state, RNG
state, step and loss log go to ``<adapters>/<stage name>.checkpoint/state.pt`` (written atomically); a killed
run continues from there with the same batches (the schedule is fixed by the seed up front) and, on CPU, the
same numbers. A finished stage is saved with :func:`judgelab.experiments.finetuning.save_adapter` (adapter,
loss log, training record with the adapter's sha256) and is not retrained; evaluations already in the item
tables are not recomputed.

**Evaluation** (:func:`evaluate_stage`): on the held-out instructions, the loss of the gold answer (mean
per-token cross-entropy over the answer text, without the closing token, so base and chat stages are
compared on the same tokens) and a greedy answer of at most ``max_new_tokens`` tokens (*answered*: it ends
with the end of turn -- ``<end_of_turn>`` or ``<eos>`` -- within the limit and is not empty); on the
held-out pairs, the log-probability of the chosen and the rejected answer. From these
(:func:`stage_metrics`): per stage, the share of held-out pairs whose chosen answer is more likely (summed
and per-token), and for DPO the implicit-reward accuracy against the SFT reference (the share of pairs with
``(log pi(c) - log ref(c)) > (log pi(r) - log ref(r))``), each with a bootstrap interval over items.

Layout: ``results/numerical_bias/alignment/`` (committed: ``alignment_meta.json``, ``training_log.csv``,
``heldout_instructions.csv``, ``heldout_pairs.csv``, ``stage_metrics.csv``) and
``results/numerical_bias/adapters/`` (git-ignored; the meta holds each adapter's sha256 and size, so a stage
can be *fingerprinted* without its weights: :func:`stage_fingerprint`). Other profiles write to
``results/runs/<profile>/numerical_bias/``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from judgelab import stats
from judgelab.data.alignment import dpo_pairs, load_alpaca_eval_pairs, sft_examples
from judgelab.experiments.finetuning import (
    ADAPTER_FILE,
    META_FILE,
    _left_pad,
    _merged_model,
    adapter_done,
    save_adapter,
)
from judgelab.experiments.train_loop import (  # noqa: F401 (re-exported)
    TrainingInterrupted,
    batch_schedule,
    train_loop,
)
from judgelab.models.base import Model, messages_to_text
from judgelab.paths import atomic_write, file_sha256, results_path, write_csv
from judgelab.profiles import hardware

BASE_MODEL = "gemma-3-270m"
STAGES: tuple[str, ...] = ("base", "sft", "dpo")
TRAINED_STAGES: tuple[str, ...] = ("sft", "dpo")
META_JSON = "alignment_meta.json"
END_OF_TURN = "<end_of_turn>"
#: the token that closes a trained answer (chat format). Gemma's template closes a model turn with
#: <end_of_turn>, which this base model has never produced (P ~ 1e-15 where the gold answers end) and which
#: LoRA did not raise above ~4e-4 in one epoch (lr 2e-4; lr 1e-3 with the token weighted 20x: the same after
#: 10 steps); the base model's own end of text, <eos>, has P ~ 1e-2 there, so the answers close with it.
#: The prompts are the template's, unchanged; generation stops at either token.
ANSWER_END = "<eos>"

#: Gemma 3's chat template, as in the tokenizer_config.json of google/gemma-3-270m-it (and every Gemma 3
#: instruction-tuned model): the base model's tokenizer has none, so the stages are trained and run with it
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    "    {%- set first_user_prefix = \"\" -%}\n"
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    "        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n"
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    "        {%- set role = \"model\" -%}\n"
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else \"\") }}\n"
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    "        {{ raise_exception(\"Invalid content type\") }}\n"
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\\n' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\\n'}}\n"
    "{%- endif -%}\n"
)
CHAT_TEMPLATE_SOURCE = "Gemma 3 instruction-tuned chat template (google/gemma-3-270m-it tokenizer_config.json)"


# --- profiles ----------------------------------------------------------------------------------------------
#: ``<start_of_turn>`` and ``<end_of_turn>`` in Gemma 3's tokenizer (checked against it in the tests)
GEMMA3_TURN_TOKENS: tuple[int, ...] = (105, 106)


@dataclass(frozen=True)
class StageTrain:
    """LoRA and optimiser settings of one stage (recorded in the stage's fingerprint)."""

    lr: float
    batch_size: int = 8
    epochs: float = 1.0
    max_steps: int | None = None
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                       "down_proj")
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    #: DPO only: the strength of the reference (TRL's default 0.1)
    beta: float | None = None
    #: token ids whose (tied input/output) embedding rows are trained too (peft ``trainable_token_indices``;
    #: e.g. :data:`GEMMA3_TURN_TOKENS`: the base model has never produced ``<end_of_turn>``). Off by default:
    #: on CPU it costs about 3x per step, since peft rebuilds the tied 262k-row output layer every pass
    trainable_token_ids: tuple[int, ...] = ()
    #: SFT only: weight of each answer's closing token (``<end_of_turn>``) in the token-averaged
    #: cross-entropy (1 = plain SFT). One closing token per ~50 answer tokens had too little pull: see "book"
    end_token_weight: float = 1.0
    seed: int = 0

    def steps(self, n_examples: int) -> int:
        steps = max(1, int(np.ceil(self.epochs * n_examples / self.batch_size)))
        return min(steps, self.max_steps) if self.max_steps else steps

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "target_modules": list(self.target_modules),
                "trainable_token_ids": list(self.trainable_token_ids)}


@dataclass(frozen=True)
class AlignProfile:
    """Sizes of the alignment run."""

    name: str
    sft: StageTrain
    dpo: StageTrain
    #: held-out SFT instructions (loss of the gold answer, greedy answers)
    n_sft_eval: int = 40
    #: SFT training examples (``None``: every one that fits ``max_length``)
    n_sft_train: int | None = None
    n_dpo_train: int = 96
    n_dpo_eval: int = 60
    #: prompt + answer + end of turn, in tokens (chat format); longer examples are not used
    max_length: int = 256
    max_new_tokens: int = 128
    checkpoint_seconds: float = 180.0
    seed: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    def data_settings(self) -> dict[str, Any]:
        return {"n_sft_eval": self.n_sft_eval, "n_sft_train": self.n_sft_train, "n_dpo_train": self.n_dpo_train,
                "n_dpo_eval": self.n_dpo_eval, "max_length": self.max_length, "seed": self.seed}


ALIGN: dict[str, AlignProfile] = {
    # live in the tests: a few short examples, two steps per stage, seconds of training
    "ci": AlignProfile("ci", sft=StageTrain(lr=5e-4, batch_size=2, max_steps=2, trainable_token_ids=GEMMA3_TURN_TOKENS),
                       dpo=StageTrain(lr=1e-4, batch_size=2, max_steps=2, beta=0.1),
                       n_sft_eval=2, n_sft_train=4, n_dpo_train=4, n_dpo_eval=2, max_length=48,
                       max_new_tokens=6, checkpoint_seconds=0.0),
    # the committed run, sized to about an hour on one thread of this project's CPU (measured: a 256-token
    # example takes about 4 s forward + backward): every SFT example that fits 256 tokens once, 96 DPO
    # pairs once (12 steps: what fitted the session after the SFT rerun, at load 5-6 on the 2 shared cores),
    # 40 held-out instructions and 60 held-out pairs. A first SFT at lr 2e-4 left P(<end_of_turn>) at ~5e-4
    # where answers end (base: ~1e-15), and 0 of 40 held-out answers ended; at lr 1e-3 it was still
    # 1e-4 to 4e-4 after 21 of 43 steps, and with the token weighted 20x the same after 10: hence answers
    # closed by <eos> (ANSWER_END), weighted 5x, at lr 5e-4. (Training the turn tokens' embedding rows as
    # well, peft trainable_token_indices, ran 3x slower per step on this CPU: the tied 262k-row output layer
    # is rebuilt every pass.)
    "book": AlignProfile("book", sft=StageTrain(lr=5e-4, batch_size=8, end_token_weight=5.0),
                         dpo=StageTrain(lr=2e-4, batch_size=8, beta=0.1),
                         n_sft_eval=40, n_sft_train=None, n_dpo_train=96, n_dpo_eval=60, max_length=256,
                         max_new_tokens=128),
}


def align_profile(name: str | AlignProfile) -> AlignProfile:
    if isinstance(name, AlignProfile):
        return name
    if name not in ALIGN:
        raise ValueError(f"unknown alignment profile {name!r}; choose one of {tuple(ALIGN)}")
    return ALIGN[name]


def default_results_dir(profile: str | AlignProfile = "book") -> Path:
    """``results/numerical_bias/alignment`` for book; ``results/runs/<profile>/numerical_bias/alignment``."""
    name = align_profile(profile).name
    return results_path("numerical_bias", "alignment") if name == "book" else \
        results_path("runs", name, "numerical_bias", "alignment")


def _results_dir(results_dir, profile) -> Path:
    return Path(results_dir) if results_dir is not None else default_results_dir(profile)


def adapters_dir(results_dir: Path | str) -> Path:
    """The adapters' folder beside the results folder (``results/numerical_bias/adapters``: git-ignored)."""
    return Path(results_dir).parent / "adapters"


def stage_name(stage: str) -> str:
    """``gemma-3-270m`` for the base, ``gemma-3-270m-sft``, ``gemma-3-270m-dpo``."""
    _check_stage(stage)
    return BASE_MODEL if stage == "base" else f"{BASE_MODEL}-{stage}"


def adapter_path(stage: str, results_dir: Path | str) -> Path:
    if stage not in TRAINED_STAGES:
        raise ValueError(f"stage {stage!r} has no adapter; trained stages: {TRAINED_STAGES}")
    return adapters_dir(results_dir) / stage_name(stage)


def checkpoint_path(stage: str, results_dir: Path | str) -> Path:
    return adapters_dir(results_dir) / f"{stage_name(stage)}.checkpoint"


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ValueError(f"unknown alignment stage {stage!r}; stages: {STAGES}")


class AdapterMissing(FileNotFoundError):
    """A stage's adapter is not on this machine (adapters are not committed)."""


def train_command(stage: str, profile: str) -> str:
    return f"judgelab run align --profile {profile} --stage {stage}"


# --- tokens ------------------------------------------------------------------------------------------------
def chat_tokenizer(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` with Gemma 3's chat template where it has none (the base model's has none)."""
    tok = copy.deepcopy(tokenizer)
    if not tok.chat_template:
        tok.chat_template = GEMMA3_CHAT_TEMPLATE
    return tok


def template_sha256() -> str:
    return hashlib.sha256(GEMMA3_CHAT_TEMPLATE.encode()).hexdigest()


def prompt_ids(tokenizer: Any, instruction: str, fmt: str) -> list[int]:
    """Token ids of the prompt for ``instruction``: ``chat`` (the template, ends with the model header) or
    ``completion`` (the base model's: BOS, the instruction and a blank line, as the judging code renders)."""
    msgs = [{"role": "user", "content": instruction}]
    if fmt == "chat":
        text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    if fmt == "completion":
        return list(tokenizer(messages_to_text(msgs), add_special_tokens=True)["input_ids"])
    raise ValueError(f"unknown prompt format {fmt!r}: 'chat' or 'completion'")


def answer_ids(tokenizer: Any, answer: str, fmt: str | None) -> list[int]:
    """Token ids of ``answer`` (stripped), closed by :data:`ANSWER_END` (chat), ``<eos>`` (completion) or
    nothing (``None``: the evaluation's loss, the same tokens for every stage)."""
    ids = list(tokenizer(answer.strip(), add_special_tokens=False)["input_ids"])
    if fmt == "chat":
        ids.append(tokenizer.convert_tokens_to_ids(ANSWER_END))
    elif fmt == "completion":
        ids.append(tokenizer.eos_token_id)
    elif fmt is not None:
        raise ValueError(f"unknown prompt format {fmt!r}")
    return ids


def stop_ids(tokenizer: Any) -> list[int]:
    """Tokens that end an answer: ``<end_of_turn>`` and ``<eos>``."""
    return sorted({tokenizer.convert_tokens_to_ids(END_OF_TURN), tokenizer.eos_token_id})


# --- log-probabilities and losses --------------------------------------------------------------------------
def _parts(model: Any) -> tuple[Any, Any, float | None]:
    """The decoder (hidden states after the final norm), the output layer and its logit soft-cap."""
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    cap = getattr(hf.config.get_text_config(), "final_logit_softcapping", None)
    return hf.model, hf.lm_head, cap


def answer_logprobs(model: Any, ids: Sequence[int], start: int):
    """Log-probability of each answer token ``ids[start:]`` given what precedes it: a 1-D tensor.

    The decoder runs over the whole sequence; the output layer (262k x 640 for gemma-3-270m) only at the
    ``len(ids) - start`` positions that predict an answer token -- the same numbers as the full forward
    pass's log-softmax (tested), at a fraction of its cost.
    """
    import torch

    if not 0 < start < len(ids):
        raise ValueError(f"answer start {start} outside the sequence of {len(ids)} tokens")
    body, head, cap = _parts(model)
    device = head.weight.device
    x = torch.tensor([list(ids)], dtype=torch.long, device=device)
    hidden = body(input_ids=x, use_cache=False).last_hidden_state[0, start - 1 : len(ids) - 1]
    logits = head(hidden).float()
    if cap:
        logits = torch.tanh(logits / cap) * cap
    return -torch.nn.functional.cross_entropy(logits, x[0, start:], reduction="none")


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float = 0.1):
    """The DPO sigmoid loss per pair: ``-log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r)))``.

    Arguments are summed answer log-probabilities (tensors of equal shape). TRL's ``loss_type="sigmoid"``
    with no label smoothing; the tests check it against a hand computation.
    """
    import torch

    logits = (policy_chosen - policy_rejected) - (ref_chosen - ref_rejected)
    return -torch.nn.functional.logsigmoid(beta * logits)


# --- the training loop -------------------------------------------------------------------------------------
def lora_model(hf_model: Any, config: StageTrain) -> Any:
    """A peft LoRA model around a *copy* of ``hf_model`` (the original is left untouched)."""
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config.seed)
    lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                      target_modules=list(config.target_modules), task_type="CAUSAL_LM",
                      trainable_token_indices=list(config.trainable_token_ids) or None)
    return get_peft_model(copy.deepcopy(hf_model), lora)


def sft_step_fn(model: Any, examples: Sequence[tuple[list[int], int]], end_weight: float = 1.0):
    """One SFT batch: cross-entropy of the answer tokens, averaged over the batch's answer tokens, each
    answer's last (closing) token counted ``end_weight`` times (1: plain SFT)."""

    def step(batch: list[int], _size: int) -> dict[str, float]:
        n_tokens = sum(len(examples[i][0]) - examples[i][1] for i in batch)
        weight = n_tokens + (end_weight - 1) * len(batch)
        total, plain, p_end = 0.0, 0.0, 0.0
        for i in batch:
            ids, start = examples[i]
            lp = answer_logprobs(model, ids, start)
            loss = -(lp.sum() + (end_weight - 1) * lp[-1]) / weight
            loss.backward()
            total += float(loss.detach())
            plain += float(-lp.detach().sum()) / n_tokens
            p_end += float(lp[-1].detach().exp()) / len(batch)
        # token_loss: the plain per-token cross-entropy; p_end: mean probability of each example's last token
        # (the closing <end_of_turn> in chat format)
        return {"loss": total, "token_loss": plain, "tokens": n_tokens, "p_end": p_end}

    return step


def dpo_step_fn(model: Any, pairs: Sequence[tuple[tuple[list[int], int], tuple[list[int], int]]],
                reference: Sequence[tuple[float, float]], beta: float):
    """One DPO batch: the sigmoid loss (:func:`dpo_loss`) averaged over the batch's pairs."""
    import torch

    def step(batch: list[int], size: int) -> dict[str, float]:
        total, correct, margin, rc, rr = 0.0, 0, 0.0, 0.0, 0.0
        for i in batch:
            (c_ids, c_start), (r_ids, r_start) = pairs[i]
            pc = answer_logprobs(model, c_ids, c_start).sum()
            pr = answer_logprobs(model, r_ids, r_start).sum()
            ref_c, ref_r = (torch.tensor(v, dtype=pc.dtype) for v in reference[i])
            loss = dpo_loss(pc, pr, ref_c, ref_r, beta) / size
            loss.backward()
            total += float(loss.detach())
            reward_c = beta * (float(pc.detach()) - float(ref_c))
            reward_r = beta * (float(pr.detach()) - float(ref_r))
            correct += reward_c > reward_r
            margin += (reward_c - reward_r) / size
            rc += reward_c / size
            rr += reward_r / size
        return {"loss": total, "reward_accuracy": correct / size, "reward_margin": margin,
                "reward_chosen": rc, "reward_rejected": rr}

    return step


def reference_logprobs(model: Any, pairs, ckpt: Path, data_digest: str, *, progress: bool = True,
                       checkpoint_seconds: float = 180.0) -> list[tuple[float, float]]:
    """Summed answer log-probabilities of each pair's (chosen, rejected) under the reference ``model``,
    computed once and kept in ``ckpt/reference.json`` (resumes part way; refuses a file of other data)."""
    import torch
    from tqdm.auto import tqdm

    path = ckpt / "reference.json"
    done: list[list[float]] = []
    if path.is_file():
        rec = json.loads(path.read_text())
        if rec.get("data") != data_digest:
            raise ValueError(f"{path} holds reference log-probabilities of other pairs; remove it to recompute")
        done = rec["logprobs"]
    last = time.time()
    with torch.inference_mode():
        for i in tqdm(range(len(done), len(pairs)), desc="DPO reference log-probs", disable=not progress,
                      initial=len(done), total=len(pairs)):
            (c_ids, c_start), (r_ids, r_start) = pairs[i]
            done.append([float(answer_logprobs(model, c_ids, c_start).sum()),
                         float(answer_logprobs(model, r_ids, r_start).sum())])
            if time.time() - last >= checkpoint_seconds or len(done) == len(pairs):
                ckpt.mkdir(parents=True, exist_ok=True)
                with atomic_write(path) as fh:
                    json.dump({"data": data_digest, "logprobs": done}, fh)
                last = time.time()
    return [tuple(x) for x in done]  # type: ignore[misc]


# --- data --------------------------------------------------------------------------------------------------
@dataclass
class AlignData:
    sft: pd.DataFrame  # source, id, instruction, response, split
    pairs_train: pd.DataFrame
    pairs_eval: pd.DataFrame
    record: dict[str, Any]

    def digest(self, what: str, reference: str = "") -> str:
        """Of the training examples' ids (and, for DPO, of the reference: the SFT adapter's sha256)."""
        df = {"sft": self.sft[self.sft["split"] == "train"], "dpo": self.pairs_train}[what]
        return hashlib.sha256(json.dumps([df["id"].tolist(), reference]).encode()).hexdigest()[:16]


def prepare_data(prof: AlignProfile, tokenizer: Any) -> AlignData:
    """The SFT examples and DPO pairs of ``prof``, length-checked in the chat format of ``tokenizer``."""
    overhead = len(prompt_ids(tokenizer, "", "chat")) + 1  # template tokens and the closing end of turn
    loaded = load_alpaca_eval_pairs()
    all_pairs = loaded.rows
    lengths: dict[str, int] = {}

    def count(texts) -> None:  # one batched call for the distinct texts (instructions and baselines repeat)
        todo = sorted({t.strip() for t in texts if t.strip() not in lengths})
        if todo:
            ids = tokenizer(todo, add_special_tokens=False)["input_ids"]
            lengths.update({t: len(i) for t, i in zip(todo, ids)})

    def n_tokens(text: str) -> int:
        count([text])
        return lengths[text.strip()]

    def fits(instruction: str, answer: str) -> bool:
        return overhead + n_tokens(instruction) + n_tokens(answer) <= prof.max_length

    count([*all_pairs["instruction"], *all_pairs["chosen"], *all_pairs["rejected"]])
    sft = sft_examples(prof.n_sft_eval, prof.seed, fits=fits)
    train_idx = sft.index[sft["split"] == "train"]
    if prof.n_sft_train is not None:
        keep = np.random.default_rng(prof.seed).permutation(train_idx)[: prof.n_sft_train]
        sft.loc[[i for i in train_idx if i not in set(keep)], "split"] = "unused"
    ok = [fits(q, c) and fits(q, r) for q, c, r in zip(all_pairs["instruction"], all_pairs["chosen"],
                                                       all_pairs["rejected"])]
    order = dpo_pairs(sft["instruction"], seed=prof.seed, pairs=all_pairs[ok])
    need = prof.n_dpo_eval + prof.n_dpo_train
    if len(order) < need:
        raise ValueError(f"only {len(order)} AlpacaEval instructions have a pair that fits {prof.max_length} "
                         f"tokens; profile {prof.name} needs {need}")
    record = {
        "sft_sources": sorted(sft["source"].unique()),
        "sft_split_counts": sft["split"].value_counts().to_dict(),
        "alpaca_eval_pairs_decided": len(all_pairs),
        "alpaca_eval_refused": loaded.refused_counts().to_dict(orient="records"),
        "alpaca_eval_pairs_fit": int(sum(ok)),
        "alpaca_eval_instructions_with_fitting_pair_not_sft": len(order),
        "dpo_train": prof.n_dpo_train, "dpo_eval": prof.n_dpo_eval,
        "dpo_train_chosen_longer_share": float(np.mean(
            [n_tokens(c) > n_tokens(r) for c, r in zip(order["chosen"][prof.n_dpo_eval:need],
                                                       order["rejected"][prof.n_dpo_eval:need])])),
        "max_length": prof.max_length,
    }
    return AlignData(sft, order.iloc[prof.n_dpo_eval:need].reset_index(drop=True),
                     order.iloc[: prof.n_dpo_eval].reset_index(drop=True), record)


def _example(tokenizer: Any, instruction: str, answer: str, fmt: str, close: bool = True) -> tuple[list[int], int]:
    p = prompt_ids(tokenizer, instruction, fmt)
    return p + answer_ids(tokenizer, answer, fmt if close else None), len(p)


# --- meta --------------------------------------------------------------------------------------------------
def read_meta(results_dir: Path | str) -> dict[str, Any]:
    path = Path(results_dir) / META_JSON
    if not path.is_file():
        raise FileNotFoundError(f"no alignment record at {path}: run `judgelab run align --profile ...` first")
    return json.loads(path.read_text())


def _write_meta(results_dir: Path, meta: dict[str, Any]) -> None:
    with atomic_write(Path(results_dir) / META_JSON) as fh:
        fh.write(json.dumps(meta, indent=1, sort_keys=True, default=str))


def _adapter_record(meta: dict[str, Any], stage: str) -> dict[str, Any]:
    rec = meta["stages"][stage]
    return {"stage": stage, "adapter_sha256": rec["adapter_sha256"], "adapter_bytes": rec["adapter_bytes"],
            "n_examples": rec["n_examples"], "steps": rec["steps"], "train": rec["train"],
            "max_length": rec["max_length"], "data_digest": rec["data_digest"]}


def stage_fingerprint(stage: str, results_dir: Path | str | None = None, *, profile: str = "book") -> dict[str, Any]:
    """The stage model's fingerprint from the committed meta JSON alone (no weights needed).

    ``base``: the zoo model's own fingerprint. ``sft`` / ``dpo``: the base fingerprint with ``chat`` on,
    the chat template's sha256, the stage and its adapter records (sha256, size, examples, steps, training
    settings): the SFT adapter for ``sft``, the SFT then the DPO adapter for ``dpo``.
    """
    _check_stage(stage)
    meta = read_meta(_results_dir(results_dir, profile))
    base = dict(meta["base_fingerprint"])
    if stage == "base":
        return base
    chain = TRAINED_STAGES[: TRAINED_STAGES.index(stage) + 1]
    missing = [s for s in chain if s not in meta.get("stages", {})]
    if missing:
        raise AdapterMissing(f"stage {missing[0]!r} is not trained in {_results_dir(results_dir, profile)} "
                             f"(no record in {META_JSON}); train it with `{train_command(missing[0], profile)}`")
    return {**base, "chat": True, "chat_template_sha256": meta["chat_template"]["sha256"], "stage": stage,
            "adapters": [_adapter_record(meta, s) for s in chain]}


def _check_adapter(stage: str, results_dir: Path, profile: str, meta: dict[str, Any]) -> Path:
    path = adapter_path(stage, results_dir)
    if not adapter_done(path):
        raise AdapterMissing(f"no {stage} adapter at {path} (adapters are not committed); train it with "
                             f"`{train_command(stage, profile)}`")
    want = meta["stages"][stage]["adapter_sha256"]
    got = file_sha256(path / ADAPTER_FILE)
    if got != want:
        raise ValueError(f"adapter {path / ADAPTER_FILE} has sha256 {got}, but {results_dir / META_JSON} records "
                         f"{want}: it is not the adapter the results were made with; retrain it with "
                         f"`{train_command(stage, profile)}` (after moving it away)")
    return path


def _chat_base(base: Any) -> Any:
    from judgelab.models.transformers_backend import TransformersModel

    return TransformersModel(base.model, chat_tokenizer(base.tokenizer), name=BASE_MODEL,
                             fingerprint=base.fingerprint, chat=True, batch_size=base.batch_size)


def _stage_from(base: Any, stage: str, results_dir: Path, profile: str) -> Any:
    """The stage's TransformersModel built from a loaded base model (merges the adapter chain)."""
    meta = read_meta(results_dir)
    fp = stage_fingerprint(stage, results_dir, profile=profile)
    tm = _chat_base(base)
    chain = TRAINED_STAGES[: TRAINED_STAGES.index(stage) + 1]
    for s in chain:
        path = _check_adapter(s, results_dir, profile, meta)
        tm = _merged_model(tm, path, stage_name(s), fp if s == stage else stage_fingerprint(s, results_dir,
                                                                                           profile=profile))
    tm.model.generation_config.eos_token_id = stop_ids(tm.tokenizer)
    return tm


def stage_model(stage: str, results_dir: Path | str | None = None, *, profile: str = "book") -> Model:
    """The judge of ``stage``: ``base`` is the zoo model; ``sft`` / ``dpo`` a TransformersModel around the
    base weights with the stage's adapters merged in (dpo: SFT merged, then DPO merged), named
    :func:`stage_name`, fingerprinted by :func:`stage_fingerprint`, rendering chat prompts with the Gemma 3
    template it was trained on. Raises :class:`AdapterMissing` naming the folder and the command that trains
    it when an adapter is absent."""
    from judgelab.models import get_model

    _check_stage(stage)
    if stage == "base":
        return get_model(BASE_MODEL)
    results_dir = _results_dir(results_dir, profile)
    meta = read_meta(results_dir) if (results_dir / META_JSON).is_file() else {"stages": {}}
    for s in TRAINED_STAGES[: TRAINED_STAGES.index(stage) + 1]:
        if s not in meta["stages"]:
            raise AdapterMissing(f"no {s} adapter at {adapter_path(s, results_dir)} (and no record of it in "
                                 f"{results_dir / META_JSON}); train it with `{train_command(s, profile)}`")
        _check_adapter(s, results_dir, profile, meta)
    return _stage_from(get_model(BASE_MODEL), stage, results_dir, profile)


# --- evaluation --------------------------------------------------------------------------------------------
INSTRUCTION_COLUMNS = ["stage", "name", "fingerprint_id", "format", "source", "id", "n_answer_tokens", "loss",
                       "generation", "n_new_tokens", "ended", "answered"]
PAIR_COLUMNS = ["stage", "name", "fingerprint_id", "format", "id", "dataset", "chosen_generator",
                "rejected_generator", "n_chosen_tokens", "n_rejected_tokens", "logp_chosen", "logp_rejected"]


def greedy_answers(hf_model: Any, tokenizer: Any, prompts: Sequence[Sequence[int]], max_new_tokens: int,
                   batch_size: int = 8) -> list[tuple[str, int, bool]]:
    """Greedy continuations, ``batch_size`` prompts at a time (left-padded: on CPU one decoding step reads
    every weight once, 262k x 640 of them for the output layer alone, so a batch costs about what one prompt
    does). Per prompt: (text before the closing token, new tokens up to and including it, ended with a stop
    token within ``max_new_tokens``)."""
    import torch

    stops = stop_ids(tokenizer)
    pad = tokenizer.pad_token_id
    out: list[tuple[str, int, bool]] = []
    for b in range(0, len(prompts), batch_size):
        ids, mask, _ = _left_pad(prompts[b : b + batch_size], pad, hf_model.device)
        with torch.inference_mode():
            gen = hf_model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                    do_sample=False, eos_token_id=stops, pad_token_id=pad, top_p=None, top_k=None)
        for row in gen[:, ids.shape[1]:].tolist():
            end = next((k for k, t in enumerate(row) if t in stops), None)
            kept = row if end is None else row[:end]
            out.append((tokenizer.decode(kept, skip_special_tokens=True).strip(),
                        len(row) if end is None else end + 1, end is not None))
    return out


def evaluate_stage(hf_model: Any, tokenizer: Any, stage: str, fmt: str, fingerprint_id: str,
                   instructions: pd.DataFrame, pairs: pd.DataFrame, max_new_tokens: int,
                   progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Held-out instructions (gold-answer loss, greedy answer) and held-out pairs (log-probabilities)."""
    import torch
    from tqdm.auto import tqdm

    name = stage_name(stage)
    rows = []
    with torch.inference_mode():
        for r in tqdm(list(instructions.itertuples()), desc=f"{name}: held-out instructions", disable=not progress):
            ids, start = _example(tokenizer, r.instruction, r.response, fmt, close=False)
            lp = answer_logprobs(hf_model, ids, start)
            rows.append({"stage": stage, "name": name, "fingerprint_id": fingerprint_id, "format": fmt,
                         "source": r.source, "id": r.id, "n_answer_tokens": len(lp), "loss": float(-lp.mean())})
        prompts = [prompt_ids(tokenizer, q, fmt) for q in instructions["instruction"]]
        if progress:
            print(f"{name}: greedy answers to {len(prompts)} held-out instructions (at most {max_new_tokens} "
                  "tokens)", flush=True)
        answers = greedy_answers(hf_model, tokenizer, prompts, max_new_tokens, batch_size=20)
        for row, (text, n_new, ended) in zip(rows, answers):
            row.update({"generation": text, "n_new_tokens": n_new, "ended": ended, "answered": bool(ended and text)})
        prow = []
        for r in tqdm(list(pairs.itertuples()), desc=f"{name}: held-out pairs", disable=not progress):
            c_ids, c_start = _example(tokenizer, r.instruction, r.chosen, fmt, close=False)
            r_ids, r_start = _example(tokenizer, r.instruction, r.rejected, fmt, close=False)
            prow.append({"stage": stage, "name": name, "fingerprint_id": fingerprint_id, "format": fmt, "id": r.id,
                         "dataset": r.dataset, "chosen_generator": r.chosen_generator,
                         "rejected_generator": r.rejected_generator, "n_chosen_tokens": len(c_ids) - c_start,
                         "n_rejected_tokens": len(r_ids) - r_start,
                         "logp_chosen": float(answer_logprobs(hf_model, c_ids, c_start).sum()),
                         "logp_rejected": float(answer_logprobs(hf_model, r_ids, r_start).sum())})
    return (pd.DataFrame(rows, columns=INSTRUCTION_COLUMNS), pd.DataFrame(prow, columns=PAIR_COLUMNS))


def _fingerprint_id(fp: dict[str, Any]) -> str:
    from judgelab.models.base import canonical_json, sha256_hex

    return sha256_hex(canonical_json(fp))[:16]


def _read_items(path: Path, columns: list[str]) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.is_file() else pd.DataFrame(columns=columns)


def _store_items(results_dir: Path, stage: str, fp_id: str, inst: pd.DataFrame, pairs: pd.DataFrame) -> None:
    for fname, new, cols in (("heldout_instructions.csv", inst, INSTRUCTION_COLUMNS),
                             ("heldout_pairs.csv", pairs, PAIR_COLUMNS)):
        old = _read_items(results_dir / fname, cols)
        old = old[old["stage"] != stage]
        frames = [f for f in (old, new) if len(f)]
        out = pd.concat(frames, ignore_index=True) if frames else new
        order = {s: i for i, s in enumerate(STAGES)}
        out = out.sort_values("stage", key=lambda c: c.map(order), kind="stable")
        write_csv(out[cols], results_dir / fname)


def _evaluated(results_dir: Path, stage: str, fp_id: str, n_inst: int, n_pairs: int) -> bool:
    inst = _read_items(results_dir / "heldout_instructions.csv", INSTRUCTION_COLUMNS)
    pairs = _read_items(results_dir / "heldout_pairs.csv", PAIR_COLUMNS)
    mine = [(d["stage"] == stage) & (d["fingerprint_id"].astype(str) == fp_id) for d in (inst, pairs)]
    return int(mine[0].sum()) == n_inst and int(mine[1].sum()) == n_pairs


# --- metrics -----------------------------------------------------------------------------------------------
METRIC_COLUMNS = ["stage", "name", "format", "n_instructions", "heldout_loss", "heldout_loss_low",
                  "heldout_loss_high", "answered", "answered_low", "answered_high", "ended", "mean_new_tokens",
                  "n_pairs", "logp_accuracy", "logp_accuracy_low", "logp_accuracy_high", "logp_per_token_accuracy",
                  "logp_per_token_accuracy_low", "logp_per_token_accuracy_high", "reference",
                  "implicit_reward_accuracy", "implicit_reward_accuracy_low", "implicit_reward_accuracy_high",
                  "implicit_reward_margin", "train_examples", "train_steps", "train_seconds", "first_train_loss",
                  "last_train_loss", "adapter_sha256"]


def _iv(values) -> tuple[float, float, float]:
    iv = stats.bootstrap_mean(np.asarray(values, dtype=float))
    return iv.estimate, iv.low, iv.high


def stage_metrics(inst: pd.DataFrame, pairs: pd.DataFrame, log: pd.DataFrame, meta: dict[str, Any],
                  beta: float = 0.1, tail: int = 3) -> pd.DataFrame:
    """One row per evaluated stage: the held-out measures with 95 % bootstrap intervals and the training record.

    ``logp_accuracy``: share of held-out pairs whose chosen answer has the higher summed log-probability
    (``logp_per_token_accuracy``: per answer token, which removes the length advantage of short answers);
    ``implicit_reward_accuracy`` (DPO, reference = the SFT stage on the same pairs): share of pairs with
    ``beta (log pi(c) - log ref(c)) > beta (log pi(r) - log ref(r))``; ``implicit_reward_margin`` its mean.
    """
    rows = []
    for stage in [s for s in STAGES if s in set(inst["stage"]) | set(pairs["stage"])]:
        i = inst[inst["stage"] == stage]
        p = pairs[pairs["stage"] == stage].set_index("id")
        row: dict[str, Any] = {"stage": stage, "name": stage_name(stage),
                               "format": (i["format"].iloc[0] if len(i) else p["format"].iloc[0]),
                               "n_instructions": len(i), "n_pairs": len(p)}
        if len(i):
            row["heldout_loss"], row["heldout_loss_low"], row["heldout_loss_high"] = _iv(i["loss"])
            row["answered"], row["answered_low"], row["answered_high"] = _iv(i["answered"].astype(bool))
            row["ended"] = float(i["ended"].astype(bool).mean())
            row["mean_new_tokens"] = float(i["n_new_tokens"].mean())
        if len(p):
            acc = p["logp_chosen"] > p["logp_rejected"]
            per_tok = p["logp_chosen"] / p["n_chosen_tokens"] > p["logp_rejected"] / p["n_rejected_tokens"]
            row["logp_accuracy"], row["logp_accuracy_low"], row["logp_accuracy_high"] = _iv(acc)
            (row["logp_per_token_accuracy"], row["logp_per_token_accuracy_low"],
             row["logp_per_token_accuracy_high"]) = _iv(per_tok)
        ref = {"dpo": "sft"}.get(stage)
        if ref and len(p) and ref in set(pairs["stage"]):
            r = pairs[pairs["stage"] == ref].set_index("id").loc[p.index]
            margin = beta * ((p["logp_chosen"] - r["logp_chosen"]) - (p["logp_rejected"] - r["logp_rejected"]))
            row["reference"] = ref
            (row["implicit_reward_accuracy"], row["implicit_reward_accuracy_low"],
             row["implicit_reward_accuracy_high"]) = _iv(margin > 0)
            row["implicit_reward_margin"] = float(margin.mean())
        rec = meta.get("stages", {}).get(stage)
        if rec:
            lg = log[log["stage"] == stage].sort_values("step") if len(log) else log
            row.update({"train_examples": rec["n_examples"], "train_steps": rec["steps"],
                        "train_seconds": rec["train_seconds"], "adapter_sha256": rec["adapter_sha256"]})
            if len(lg):
                row["first_train_loss"] = float(lg["loss"].iloc[0])
                row["last_train_loss"] = float(lg["loss"].tail(tail).mean())
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=METRIC_COLUMNS)


MEASURES: dict[str, str] = {
    "heldout_loss": "held-out gold-answer loss (nats/token)",
    "answered": "held-out instructions answered (ends its turn, not empty)",
    "logp_accuracy": "held-out pairs: chosen more likely (summed log-prob)",
    "logp_per_token_accuracy": "held-out pairs: chosen more likely (per token)",
    "implicit_reward_accuracy": "held-out pairs: DPO implicit reward prefers chosen (vs SFT)",
}


def metrics_table(results_dir: Path | str | None = None, *, profile: str = "book") -> pd.DataFrame:
    """The stage metrics for the chapter, tidy: one row per (measure, stage) with value, interval and n."""
    m = pd.read_csv(_results_dir(results_dir, profile) / "stage_metrics.csv")
    rows = []
    for key, label in MEASURES.items():
        for r in m.to_dict(orient="records"):
            if pd.isna(r.get(key)):
                continue
            n = r["n_instructions"] if key in ("heldout_loss", "answered") else r["n_pairs"]
            rows.append({"measure": key, "label": label, "stage": r["stage"], "model": r["name"],
                         "format": r["format"], "value": r[key], "low": r.get(f"{key}_low"),
                         "high": r.get(f"{key}_high"), "n": int(n)})
    return pd.DataFrame(rows, columns=["measure", "label", "stage", "model", "format", "value", "low", "high", "n"])


# --- the run -----------------------------------------------------------------------------------------------
def _loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover
        return []


def _train_stage(stage: str, init_hf: Any, tokenizer: Any, data: AlignData, prof: AlignProfile,
                 results_dir: Path, base_fp: dict[str, Any], progress: bool,
                 on_step: Callable[[int], None] | None = None, reference: str = "") -> dict[str, Any]:
    """Train ``stage``'s adapter on top of ``init_hf`` (resuming a checkpoint) and save it; its record."""
    cfg = prof.sft if stage == "sft" else prof.dpo
    ckpt = checkpoint_path(stage, results_dir)
    digest = data.digest(stage, reference)
    t0 = time.time()
    if stage == "sft":
        train = data.sft[data.sft["split"] == "train"].reset_index(drop=True)
        examples = [_example(tokenizer, q, a, "chat") for q, a in zip(train["instruction"], train["response"])]
        model = lora_model(init_hf, cfg)
        log = train_loop(model, sft_step_fn(model, examples, cfg.end_token_weight), len(examples), cfg, ckpt, digest,
                         checkpoint_seconds=prof.checkpoint_seconds, progress=progress,
                         desc=f"SFT {stage_name(stage)}", on_step=on_step)
        n_examples, extra = len(examples), {"answer_tokens": int(sum(len(i) - s for i, s in examples))}
    else:
        pt = data.pairs_train
        pairs = [(_example(tokenizer, q, c, "chat"), _example(tokenizer, q, r, "chat"))
                 for q, c, r in zip(pt["instruction"], pt["chosen"], pt["rejected"])]
        init_hf.eval()
        ref = reference_logprobs(init_hf, pairs, ckpt, digest, progress=progress,
                                 checkpoint_seconds=prof.checkpoint_seconds)
        model = lora_model(init_hf, cfg)
        log = train_loop(model, dpo_step_fn(model, pairs, ref, cfg.beta or 0.1), len(pairs), cfg, ckpt, digest,
                         checkpoint_seconds=prof.checkpoint_seconds, progress=progress,
                         desc=f"DPO {stage_name(stage)}", on_step=on_step)
        n_examples = len(pairs)
        extra = {"reference": "sft", "reference_logp_chosen_mean": float(np.mean([r[0] for r in ref])),
                 "reference_logp_rejected_mean": float(np.mean([r[1] for r in ref]))}
    meta = {"stage": stage, "name": stage_name(stage), "n_examples": n_examples, "steps": len(log),
            "train": cfg.as_dict(), "max_length": prof.max_length, "data_digest": digest,
            "train_seconds": float(log["seconds"].iloc[-1]) if len(log) else time.time() - t0,
            "wall_seconds_this_session": time.time() - t0, "profile": prof.name, "hardware": hardware(),
            "load_average_end": _loadavg(), "torch_threads": _threads(), "date": time.strftime("%Y-%m-%d"),
            "base_fingerprint": base_fp, **extra}
    meta = save_adapter(model, adapter_path(stage, results_dir), log.assign(stage=stage), meta)
    shutil.rmtree(ckpt, ignore_errors=True)
    del model
    return meta


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def run(profile: str | AlignProfile = "book", results_dir: Path | str | None = None, *,
        stage: str = "dpo", progress: bool = True, on_step: Callable[[str, int], None] | None = None,
        base: Any = None) -> dict[str, Path]:
    """Evaluate base, train and evaluate SFT, train and evaluate DPO (up to ``stage``); write the tables.

    Every finished piece is kept (adapters, item tables, meta), so a rerun continues where the last stopped.
    ``base``: an already loaded base TransformersModel (tests); ``on_step(stage, step)``: a test hook.
    """
    from judgelab.models import get_model

    prof = align_profile(profile)
    if stage not in TRAINED_STAGES:
        raise ValueError(f"--stage must be one of {TRAINED_STAGES}, not {stage!r}")
    results_dir = _results_dir(results_dir, prof)
    results_dir.mkdir(parents=True, exist_ok=True)
    t_run = time.time()
    base = base if base is not None else get_model(BASE_MODEL)
    chat_tok = chat_tokenizer(base.tokenizer)
    data = prepare_data(prof, chat_tok)
    meta_path = results_dir / META_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    # the held-out sets must be the ones already evaluated; training sizes may change for a stage not yet
    # trained (a trained stage is checked against its own data below)
    held = ("n_sft_eval", "n_dpo_eval", "max_length", "seed")
    was = meta.get("data_settings", prof.data_settings())
    if meta.get("profile") not in (None, prof.name) or any(was.get(k) != prof.data_settings()[k] for k in held):
        raise ValueError(f"{meta_path} records another run (profile {meta.get('profile')}, data "
                         f"{meta.get('data_settings')}); write this one elsewhere (results_dir)")
    meta.update({"base_model": BASE_MODEL, "base_fingerprint": base.fingerprint, "profile": prof.name,
                 "data_settings": prof.data_settings(), "data": data.record,
                 "chat_template": {"tokenizer_had_chat_template": bool(base.tokenizer.chat_template),
                                   "source": CHAT_TEMPLATE_SOURCE, "sha256": template_sha256(),
                                   "template": GEMMA3_CHAT_TEMPLATE},
                 "answer_end": ANSWER_END,
                 "generation": {"max_new_tokens": prof.max_new_tokens, "decoding": "greedy",
                                "stop_tokens": [END_OF_TURN, base.tokenizer.eos_token]}})
    meta.setdefault("stages", {})
    meta.setdefault("evaluation", {})
    _write_meta(results_dir, meta)
    inst_eval = data.sft[data.sft["split"] == "eval"].reset_index(drop=True)

    def evaluate(st: str, hf: Any, tok: Any, fmt: str) -> None:
        fp_id = _fingerprint_id(stage_fingerprint(st, results_dir, profile=prof.name))
        if _evaluated(results_dir, st, fp_id, len(inst_eval), len(data.pairs_eval)):
            return
        t0 = time.time()
        inst, pairs = evaluate_stage(hf, tok, st, fmt, fp_id, inst_eval, data.pairs_eval, prof.max_new_tokens,
                                     progress)
        _store_items(results_dir, st, fp_id, inst, pairs)
        meta["evaluation"][st] = {"seconds": time.time() - t0, "fingerprint_id": fp_id, "hardware": hardware(),
                                  "load_average_end": _loadavg(), "torch_threads": _threads(),
                                  "date": time.strftime("%Y-%m-%d")}
        _write_meta(results_dir, meta)

    evaluate("base", base.model, base.tokenizer, "completion")
    current = _chat_base(base)
    for st in TRAINED_STAGES[: TRAINED_STAGES.index(stage) + 1]:
        path = adapter_path(st, results_dir)
        reference = meta["stages"]["sft"]["adapter_sha256"] if st == "dpo" else ""
        if not adapter_done(path):
            hook = (lambda step, st=st: on_step(st, step)) if on_step else None
            _train_stage(st, current.model, chat_tok, data, prof, results_dir, base.fingerprint, progress, hook,
                         reference)
        rec = json.loads((path / META_FILE).read_text())
        cfg = prof.sft if st == "sft" else prof.dpo
        if rec.get("data_digest") != data.digest(st, reference) or rec.get("train") != cfg.as_dict():
            raise ValueError(f"the {st} adapter at {path} was trained on other data or settings than profile "
                             f"{prof.name} asks for; move it away to train this stage again")
        meta["stages"][st] = {k: v for k, v in rec.items() if k != "base_fingerprint"}
        _write_meta(results_dir, meta)
        fp = stage_fingerprint(st, results_dir, profile=prof.name)
        merged = _merged_model(current, path, stage_name(st), fp)
        merged.model.generation_config.eos_token_id = stop_ids(chat_tok)
        evaluate(st, merged.model, chat_tok, "chat")
        current = merged
    meta["run_seconds_last_session"] = time.time() - t_run
    _write_meta(results_dir, meta)
    return write_tables(results_dir)


def write_tables(results_dir: Path | str) -> dict[str, Path]:
    """``training_log.csv`` (from the adapters' records in the meta) and ``stage_metrics.csv``."""
    results_dir = Path(results_dir)
    meta = read_meta(results_dir)
    logs = []
    for st in TRAINED_STAGES:
        path = adapter_path(st, results_dir) / "training_log.csv"
        if st in meta.get("stages", {}) and path.is_file():
            logs.append(pd.read_csv(path).assign(stage=st))
    log = pd.concat(logs, ignore_index=True) if logs else pd.DataFrame(columns=["stage", "step", "loss"])
    if (results_dir / "training_log.csv").is_file() and not logs:  # adapters elsewhere: keep the committed log
        log = pd.read_csv(results_dir / "training_log.csv")
    log = log[["stage"] + [c for c in log.columns if c != "stage"]]
    inst = _read_items(results_dir / "heldout_instructions.csv", INSTRUCTION_COLUMNS)
    pairs = _read_items(results_dir / "heldout_pairs.csv", PAIR_COLUMNS)
    beta = float(meta.get("stages", {}).get("dpo", {}).get("train", {}).get("beta") or 0.1)
    metrics = stage_metrics(inst, pairs, log, meta, beta=beta)
    return {"training_log.csv": write_csv(log, results_dir / "training_log.csv"),
            "stage_metrics.csv": write_csv(metrics, results_dir / "stage_metrics.csv"),
            "heldout_instructions.csv": results_dir / "heldout_instructions.csv",
            "heldout_pairs.csv": results_dir / "heldout_pairs.csv", META_JSON: results_dir / META_JSON}


__all__ = ["ALIGN", "STAGES", "AdapterMissing", "AlignProfile", "StageTrain", "answer_logprobs", "dpo_loss",
           "metrics_table", "run", "stage_fingerprint", "stage_model", "stage_name", "write_tables"]


def _fmt_iv(v: float, lo: float, hi: float) -> str:
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def _compare(table: pd.DataFrame, measure: str, before: str, after: str) -> tuple[str, Any, Any] | None:
    """``(direction, row before, row after)`` of one measure between two stages: ``rose``/``fell`` when the
    two 95 % intervals do not overlap, else ``did not move distinguishably``; None if either is missing."""
    rows = table[table["measure"] == measure].set_index("stage")
    if before not in rows.index or after not in rows.index:
        return None
    b, a = rows.loc[before], rows.loc[after]
    if a["low"] > b["high"]:
        return "rose", b, a
    if a["high"] < b["low"]:
        return "fell", b, a
    return "did not move distinguishably", b, a


def metrics_findings(table: pd.DataFrame) -> str:
    """What each alignment stage did, in words generated from :func:`metrics_table`: the share of held-out
    instructions answered from base to SFT and from SFT to DPO, and DPO's preference accuracy on held-out
    pairs (implicit reward against the SFT reference, against chance 0.5; and the raw log-probability
    accuracy, SFT -> DPO). A direction is stated only where the intervals separate."""
    if table.empty:
        return "The alignment run has not finished yet: no stage metrics are committed."
    out = []
    for before, after in (("base", "sft"), ("sft", "dpo")):
        c = _compare(table, "answered", before, after)
        if c is not None:
            d, b, a = c
            out.append(f"From {before.upper() if before != 'base' else 'base'} to {after.upper()} the share of the "
                       f"{int(a['n'])} held-out instructions answered (a non-empty answer that ends within the token "
                       f"limit) {d}: {_fmt_iv(b['value'], b['low'], b['high'])} -> {_fmt_iv(a['value'], a['low'], a['high'])}.")
    ir = table[(table["measure"] == "implicit_reward_accuracy") & (table["stage"] == "dpo")]
    if len(ir):
        r = ir.iloc[0]
        side = ("above chance" if r["low"] > 0.5 else "below chance" if r["high"] < 0.5
                else "not distinguishable from chance")
        out.append(f"On {int(r['n'])} held-out preference pairs, DPO's implicit reward (against the SFT reference) "
                   f"prefers the chosen answer in {_fmt_iv(r['value'], r['low'], r['high'])} of pairs, {side} (0.5).")
    c = _compare(table, "logp_accuracy", "sft", "dpo")
    if c is not None:
        d, b, a = c
        out.append(f"The plain likelihood test -- is the chosen answer the more likely one? -- {d} from SFT to DPO: "
                   f"{_fmt_iv(b['value'], b['low'], b['high'])} -> {_fmt_iv(a['value'], a['low'], a['high'])}.")
    return " ".join(out) if out else "The stage metrics hold no comparable measures."
