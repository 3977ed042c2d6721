"""Tidy loaders for the Self-Judge chapter (Ye & Ng 2024, arXiv 2409.00935).

Two kinds of data, from four pinned sources (``judgelab/data/manifests/*.md`` says what each file is):

* **Training instructions with a gold reference.** Self-J needs no human *quality* labels, but it needs a
  reference answer per instruction: the policy's own answer is rated against it (self-evaluation) and
  compared with it (cosine). :func:`training_instructions` gathers Self-Instruct's 252 user-oriented
  instructions (human gold outputs), Alpaca's 175 seed tasks, BiGGen-Bench's 765 instructions (reference
  answers) and the MT-bench / Vicuna-bench questions that have a GPT-4 reference answer. An instruction
  without a reference is *refused* with its reason, never silently dropped or given an empty reference.
* **Evaluation answers with strong-judge scores.** The paper's 850-answer test set lives only on the
  Hugging Face hub. The closest offline match is Prometheus' ``vicuna_eval`` and ``mt_bench_eval``:
  640 answers of Vicuna-13B, WizardLM-13B, Llama-2-13B-chat and ChatGPT to 160 questions, each with a GPT-4
  reference answer and three GPT-4 scores on 1-5 (:func:`evaluation_answers`). Prometheus ships each row
  as one grading prompt; :func:`split_prometheus_prompt` cuts it into question, response, reference answer
  and rubric, losslessly (:func:`join_prometheus_prompt` rebuilds the prompt byte for byte; the tests check
  it for all 640 rows).

Contamination. The MT-bench and Vicuna-bench questions *are* the evaluation questions (Prometheus' sets are
built from them), so a training set that kept them would be tested on its own training instructions.
:func:`instruction_overlap` finds every training instruction whose normalised text equals, contains or is
contained in an evaluation question (MT-bench's evaluation rows are second turns whose prompt quotes the
first turn, hence containment, not only equality); :func:`training_instructions` refuses them by default.

Every loader reads verified files only (:func:`judgelab.data.fetch.fetch`). Malformed rows raise
:class:`ValueError` naming the file and the row, except a Prometheus prompt whose sections cannot be
found: that row is *counted* as unparsed (:attr:`Loaded.refused`) so one odd row does not lose 639 good ones.
"""

from __future__ import annotations

import gzip
import json
import re
import unicodedata
from dataclasses import dataclass

import pandas as pd

from judgelab.data.fetch import fetch

SELF_INSTRUCT_FILE = "human_eval/user_oriented_instructions.jsonl"
ALPACA_SEED_FILE = "seed_tasks.jsonl"
BIGGEN_FILE = "BiGGen-Bench/sample_responses.json"
MT_BENCH_FILES: dict[str, tuple[str, str]] = {  # subset -> (questions, GPT-4 reference answers)
    "mt_bench": ("fastchat/llm_judge/data/mt_bench/question.jsonl",
                 "fastchat/llm_judge/data/mt_bench/reference_answer/gpt-4.jsonl"),
    "vicuna_bench": ("fastchat/llm_judge/data/vicuna_bench/question.jsonl",
                     "fastchat/llm_judge/data/vicuna_bench/reference_answer/gpt-4.jsonl"),
}
EVAL_FILES: dict[str, str] = {
    "vicuna_eval": "eval/benchmark/data/vicuna_eval.json",
    "mt_bench_eval": "eval/benchmark/data/mt_bench_eval.json",
}
TRAINING_SOURCES: tuple[str, ...] = ("self_instruct", "alpaca_seed", "prometheus_eval", "mt_bench")

#: the four responding models, in the paper's order where it has them; Prometheus spells them differently
#: in its two files, so both spellings map to one name
RESPONDERS: tuple[str, ...] = ("Vicuna-13B", "WizardLM-13B", "Llama-2-13B-chat", "ChatGPT")
_RESPONDER_NAMES: dict[str, str] = {
    "vicuna": "Vicuna-13B", "vicuna_13b": "Vicuna-13B",
    "wizard": "WizardLM-13B", "wizardlm_13b": "WizardLM-13B",
    "llama-2-chat": "Llama-2-13B-chat", "llama2_chat_13b": "Llama-2-13B-chat",
    "chat_gpt": "ChatGPT", "chatgpt": "ChatGPT",
}

#: the ``###`` headers of a Prometheus absolute-grading prompt, in order, and the part each one opens
PROMETHEUS_SECTIONS: tuple[tuple[str, str], ...] = (
    ("task", "###Task Description:\n"),
    ("question", "\n\n###The instruction to evaluate:\n"),
    ("response", "\n\n###Response to evaluate:\n"),
    ("reference", "\n\n###Reference Answer (Score 5):\n"),
    ("rubric", "\n\n###Score Rubrics:\n"),
    ("feedback", "\n\n###Feedback:"),
)

TRAINING_COLUMNS = ["source", "id", "instruction", "reference", "subset", "system_prompt"]
REFUSED_COLUMNS = ["source", "id", "reason"]


@dataclass(frozen=True)
class Loaded:
    """Rows that can be used, and the rows refused, each with its reason (nothing is dropped unseen)."""

    rows: pd.DataFrame
    refused: pd.DataFrame

    def refused_counts(self) -> pd.DataFrame:
        """How many rows were refused, per source and reason."""
        return (self.refused.groupby(["source", "reason"], sort=False).size().rename("n").reset_index())


class PromptParseError(ValueError):
    """A Prometheus grading prompt whose ``###`` sections are not where the template puts them."""


# --- reading --------------------------------------------------------------------------------------------
def _read_text(source: str, path: str) -> str:
    local = fetch(source, path)
    opener = gzip.open if local.suffix == ".gz" else open
    with opener(local, "rt", encoding="utf-8") as fh:
        return fh.read()


def _jsonl(source: str, path: str) -> list[dict]:
    rows = []
    for i, line in enumerate(_read_text(source, path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{source}/{path} line {i}: not JSON ({err})") from None
    return rows


def _json(source: str, path: str):
    try:
        return json.loads(_read_text(source, path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}/{path}: not JSON ({err})") from None


def _field(row: dict, key: str, *, where: str, kind: type = str):
    if key not in row:
        raise ValueError(f"{where}: no field {key!r} (fields: {sorted(row)})")
    value = row[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{where}: field {key!r} is {type(value).__name__}, expected {kind.__name__}")
    return value


def _with_input(instruction: str, input_text: str) -> str:
    """Instruction and its input as one user message: the input on its own paragraph (no template words)."""
    instruction, input_text = instruction.strip(), input_text.strip()
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def _split(rows: list[dict], source: str) -> Loaded:
    """Rows with a non-empty reference are kept; the rest are refused as 'no reference'."""
    kept, refused = [], []
    for r in rows:
        if r.get("refused"):
            refused.append({"source": source, "id": r["id"], "reason": r["refused"]})
        elif not (r["reference"] or "").strip():
            refused.append({"source": source, "id": r["id"], "reason": "no reference"})
        else:
            kept.append({c: r.get(c, "") for c in TRAINING_COLUMNS})
    return Loaded(pd.DataFrame(kept, columns=TRAINING_COLUMNS), pd.DataFrame(refused, columns=REFUSED_COLUMNS))


# --- training instructions ---------------------------------------------------------------------------------
def _instances_source(source: str, path: str, subset_key: str | None) -> Loaded:
    rows = []
    for n, r in enumerate(_jsonl(source, path), 1):
        where = f"{source}/{path} row {n}"
        instances = _field(r, "instances", where=where, kind=list)
        if len(instances) != 1:
            raise ValueError(f"{where}: {len(instances)} instances, expected exactly 1")
        inst = instances[0]
        rows.append({
            "source": source,
            "id": _field(r, "id", where=where),
            "instruction": _with_input(_field(r, "instruction", where=where),
                                       _field(inst, "input", where=where)),
            "reference": _field(inst, "output", where=where).strip(),
            "subset": str(r.get(subset_key, "")) if subset_key else "",
            "system_prompt": "",
        })
    return _split(rows, source)


def load_self_instruct() -> Loaded:
    """Self-Instruct's 252 expert-written user-oriented instructions; reference = the human gold output.

    An instruction with an input (208 of them) is the instruction, a blank line, then the input.
    ``subset`` is the app that motivated it (``motivation_app``).
    """
    return _instances_source("self_instruct", SELF_INSTRUCT_FILE, "motivation_app")


def load_alpaca_seed() -> Loaded:
    """Alpaca's 175 human-written seed tasks; reference = the seed's output. ``subset`` is the task name."""
    return _instances_source("alpaca_seed", ALPACA_SEED_FILE, "name")


def load_biggen_bench() -> Loaded:
    """BiGGen-Bench's 765 instructions with reference answers (``prometheus_eval`` source).

    The file's ``response`` fields are placeholders ("Hello World!") and are not read. ``system_prompt`` is
    BiGGen's per-instance system prompt, kept beside the instruction (the policy should see it);
    ``subset`` is the capability (planning, reasoning, ...).
    """
    data = _json("prometheus_eval", BIGGEN_FILE)
    if not isinstance(data, dict):
        raise ValueError(f"prometheus_eval/{BIGGEN_FILE}: expected an object keyed by id, got {type(data).__name__}")
    rows = []
    for key, r in data.items():
        where = f"prometheus_eval/{BIGGEN_FILE} item {key!r}"
        if _field(r, "id", where=where) != key:
            raise ValueError(f"{where}: its id field is {r['id']!r}")
        rows.append({
            "source": "prometheus_eval", "id": key,
            "instruction": _field(r, "input", where=where).strip(),
            "reference": _field(r, "reference_answer", where=where).strip(),
            "subset": _field(r, "capability", where=where),
            "system_prompt": _field(r, "system_prompt", where=where).strip(),
        })
    return _split(rows, "prometheus_eval")


def load_mt_bench_questions() -> Loaded:
    """MT-bench and Vicuna-bench first-turn questions with their GPT-4 reference answers.

    Only 30 of MT-bench's 80 questions (math, reasoning, coding) and 10 of Vicuna-bench's 80 have a GPT-4
    reference; the others are refused as 'no reference'. MT-bench's second turns are refused as 'second turn
    of a dialogue': they continue the first turn's answer, so they are not stand-alone instructions.
    Ids are ``<subset>:<question_id>``.
    """
    rows = []
    for subset, (qpath, rpath) in MT_BENCH_FILES.items():
        refs: dict[int, list[str]] = {}
        for n, r in enumerate(_jsonl("mt_bench", rpath), 1):
            where = f"mt_bench/{rpath} row {n}"
            qid = _field(r, "question_id", where=where, kind=int)
            choices = _field(r, "choices", where=where, kind=list)
            if not choices:
                raise ValueError(f"{where}: no choices")
            refs[qid] = _field(choices[0], "turns", where=where, kind=list)
        seen = set()
        for n, q in enumerate(_jsonl("mt_bench", qpath), 1):
            where = f"mt_bench/{qpath} row {n}"
            qid = _field(q, "question_id", where=where, kind=int)
            turns = _field(q, "turns", where=where, kind=list)
            seen.add(qid)
            ref_turns = refs.get(qid, [])
            rows.append({
                "source": "mt_bench", "id": f"{subset}:{qid}", "instruction": str(turns[0]).strip(),
                "reference": str(ref_turns[0]).strip() if ref_turns else "",
                "subset": subset, "system_prompt": "",
            })
            for t in range(1, len(turns)):
                rows.append({"source": "mt_bench", "id": f"{subset}:{qid}:turn{t + 1}",
                             "refused": "second turn of a dialogue"})
        orphan = sorted(set(refs) - seen)
        if orphan:
            raise ValueError(f"mt_bench/{rpath}: reference answers for unknown question ids {orphan}")
    return _split(rows, "mt_bench")


_LOADERS = {
    "self_instruct": load_self_instruct,
    "alpaca_seed": load_alpaca_seed,
    "prometheus_eval": load_biggen_bench,
    "mt_bench": load_mt_bench_questions,
}


def training_instructions(sources=TRAINING_SOURCES, *, exclude_evaluation: bool = True) -> Loaded:
    """Every training instruction with a gold reference, from ``sources``; refused rows with reasons.

    With ``exclude_evaluation`` (the default), instructions that overlap an evaluation question
    (:func:`instruction_overlap`) are refused as 'in evaluation set'. As a second guard, an instruction
    whose normalised text repeats one kept earlier (another source, or the same one) is refused as
    'duplicate of <source>:<id>', so no instruction is trained on twice.
    """
    unknown = [s for s in sources if s not in _LOADERS]
    if unknown:
        raise ValueError(f"unknown training sources {unknown}; known: {list(_LOADERS)}")
    parts = [_LOADERS[s]() for s in sources]
    rows = pd.concat([p.rows for p in parts], ignore_index=True)
    refused = [p.refused for p in parts]
    if exclude_evaluation:
        overlap = instruction_overlap(rows, evaluation_answers().rows)
        hit = overlap.drop_duplicates(["source", "id"])
        bad = set(zip(hit["source"], hit["id"]))
        mask = [(s, i) in bad for s, i in zip(rows["source"], rows["id"])]
        refused.append(rows.loc[mask, ["source", "id"]].assign(reason="in evaluation set"))
        rows = rows.loc[[not m for m in mask]].reset_index(drop=True)
    norm = rows["instruction"].map(normalise_instruction)
    first: dict[str, str] = {}
    dup = []
    for k, s, i in zip(norm, rows["source"], rows["id"]):
        dup.append(first.get(k))
        first.setdefault(k, f"{s}:{i}")
    dup_mask = pd.Series([d is not None for d in dup], index=rows.index)
    refused.append(rows.loc[dup_mask, ["source", "id"]].assign(
        reason=[f"duplicate of {d}" for d in dup if d is not None]))
    rows = rows.loc[~dup_mask].reset_index(drop=True)
    refused_df = pd.concat([r for r in refused if len(r)], ignore_index=True) if any(len(r) for r in refused) \
        else pd.DataFrame(columns=REFUSED_COLUMNS)
    return Loaded(rows, refused_df[REFUSED_COLUMNS].reset_index(drop=True))


# --- evaluation answers -------------------------------------------------------------------------------------
def split_prometheus_prompt(prompt: str) -> dict[str, str]:
    """The parts of a Prometheus absolute-grading prompt: task, question, response, reference, rubric.

    Each header of :data:`PROMETHEUS_SECTIONS` must occur exactly once, in order (a response that quoted a
    header would make the cut ambiguous: refused, not guessed). A part is the text between its header and
    the next, unchanged; the trailing text after ``###Feedback:`` is returned as ``feedback`` (the template
    leaves one space there). Raises :class:`PromptParseError` saying which header is missing or repeated.
    """
    if not isinstance(prompt, str):
        raise PromptParseError(f"prompt is {type(prompt).__name__}, not text")
    starts = []
    for name, header in PROMETHEUS_SECTIONS:
        n = prompt.count(header)
        if n != 1:
            what = "missing" if n == 0 else f"found {n} times"
            raise PromptParseError(f"section header {header.strip()!r} ({name}) {what}")
        starts.append(prompt.index(header))
    if starts[0] != 0:
        raise PromptParseError(f"{starts[0]} characters before {PROMETHEUS_SECTIONS[0][1].strip()!r}")
    if starts != sorted(starts):
        order = [PROMETHEUS_SECTIONS[i][0] for i in sorted(range(len(starts)), key=starts.__getitem__)]
        raise PromptParseError(f"section headers out of order: {order}")
    parts = {}
    for k, (name, header) in enumerate(PROMETHEUS_SECTIONS):
        begin = starts[k] + len(header)
        end = starts[k + 1] if k + 1 < len(starts) else len(prompt)
        parts[name] = prompt[begin:end]
    return parts


def join_prometheus_prompt(parts: dict[str, str]) -> str:
    """The inverse of :func:`split_prometheus_prompt` (the tests check the round trip on every row)."""
    return "".join(header + parts[name] for name, header in PROMETHEUS_SECTIONS)


def _gpt4_scores(value, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) != 3:
        raise ValueError(f"{where}: gpt4_score must be a list of 3 scores, got {value!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5 for v in value):
        raise ValueError(f"{where}: gpt4_score must hold integers 1-5, got {value!r}")
    return tuple(value)


EVAL_COLUMNS = ["eval_set", "id", "question_id", "model", "model_raw", "category", "question", "response",
                "reference", "rubric", "gpt4_scores", "gpt4_mean"]


def evaluation_answers() -> Loaded:
    """The 640 GPT-4-scored answers of Prometheus' ``vicuna_eval`` and ``mt_bench_eval``.

    One row per answer: ``eval_set``, ``id`` (``<eval_set>:<question_id>:<model>``), ``question_id``
    (Vicuna-bench 1-80, MT-bench 81-160: the ids of :func:`load_mt_bench_questions`), ``model`` (one of
    :data:`RESPONDERS`; ``model_raw`` is Prometheus' spelling), ``category``, the parts of the grading prompt
    (``question``, ``response``, ``reference`` -- GPT-4's answer, given score 5 -- and ``rubric``, the
    criterion in brackets and the five score descriptions), the three GPT-4 scores and their mean
    (``gpt4_mean``, the quality every judge is correlated with). MT-bench rows are second turns: their
    ``question`` is the whole dialogue as Prometheus wrote it ("Here is a previous dialogue ...").

    Rows whose prompt does not split are refused with the parse error as reason (0 of 640 today).
    """
    rows, refused = [], []
    for eval_set, path in EVAL_FILES.items():
        data = _json("prometheus_eval", path)
        if not isinstance(data, list):
            raise ValueError(f"prometheus_eval/{path}: expected a list of rows, got {type(data).__name__}")
        for n, r in enumerate(data, 1):
            where = f"prometheus_eval/{path} row {n}"
            qid = _field(r, "idx", where=where, kind=int)
            raw_model = _field(r, "response_source", where=where)
            if raw_model not in _RESPONDER_NAMES:
                raise ValueError(f"{where}: unknown response_source {raw_model!r}; known: {sorted(_RESPONDER_NAMES)}")
            model = _RESPONDER_NAMES[raw_model]
            rid = f"{eval_set}:{qid}:{model}"
            scores = _gpt4_scores(r.get("gpt4_score"), where)
            try:
                parts = split_prometheus_prompt(_field(r, "instruction", where=where))
            except PromptParseError as err:
                refused.append({"source": "prometheus_eval", "id": rid, "reason": f"unparsed prompt: {err}"})
                continue
            rows.append({
                "eval_set": eval_set, "id": rid, "question_id": qid, "model": model, "model_raw": raw_model,
                "category": _field(r, "category", where=where),
                "question": parts["question"], "response": parts["response"],
                "reference": parts["reference"], "rubric": parts["rubric"],
                "gpt4_scores": scores, "gpt4_mean": sum(scores) / 3,
            })
    df = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    dup = df["id"][df["id"].duplicated()]
    if len(dup):
        raise ValueError(f"prometheus_eval: answer ids repeated: {sorted(set(dup))[:5]}")
    return Loaded(df, pd.DataFrame(refused, columns=REFUSED_COLUMNS))


# --- contamination ------------------------------------------------------------------------------------------
_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalise_instruction(text: str) -> str:
    """Text reduced to what makes two instructions the same one: NFKC, case-folded, every run of
    punctuation, symbols and white space made one space. "Hello,  World!" and "hello world" are equal."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def instruction_overlap(train: pd.DataFrame, evaluation: pd.DataFrame, *, min_chars: int = 20,
                        train_col: str = "instruction", eval_col: str = "question") -> pd.DataFrame:
    """Every (training instruction, evaluation question) pair that is the same instruction.

    After :func:`normalise_instruction`, a pair overlaps when the texts are equal (``how='equal'``), or when
    one contains the other and the contained one has at least ``min_chars`` characters (``'train in eval'``,
    ``'eval in train'``): an MT-bench evaluation row quotes the first turn inside its dialogue, and a
    training prompt may wrap an evaluation question in extra text. The length floor keeps a short
    instruction ("Tell me a joke") from matching every text that happens to contain it.

    Returns one row per pair: ``source``, ``id`` (of the training row), ``eval_id`` (the first evaluation
    row with that question) and ``how``; empty when nothing overlaps.
    """
    for df, col, what in ((train, train_col, "train"), (evaluation, eval_col, "evaluation")):
        if col not in df.columns:
            raise ValueError(f"{what} table has no column {col!r} (columns: {list(df.columns)})")
    ev: dict[str, str] = {}
    for q, i in zip(evaluation[eval_col], evaluation["id"]):
        ev.setdefault(normalise_instruction(q), i)
    out = []
    for s, i, text in zip(train["source"], train["id"], train[train_col]):
        t = normalise_instruction(text)
        if not t:
            continue
        if t in ev:
            out.append({"source": s, "id": i, "eval_id": ev[t], "how": "equal"})
            continue
        padded = f" {t} "  # whole words only: "cat" is not in "concatenate"
        for e, eid in ev.items():
            if len(t) >= min_chars and padded in f" {e} ":
                out.append({"source": s, "id": i, "eval_id": eid, "how": "train in eval"})
            elif len(e) >= min_chars and f" {e} " in padded:
                out.append({"source": s, "id": i, "eval_id": eid, "how": "eval in train"})
    return pd.DataFrame(out, columns=["source", "id", "eval_id", "how"])
