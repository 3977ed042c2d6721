"""Our prompt templates are the paper's, verbatim: proved against the authors' released fine-tuning data.

The released fine-tuning files contain whole prompts built from the templates. For each record we parse out
the article and the two summaries, check that they are the released article and two released summaries of
it (one by the fine-tuned model's family), rebuild the record from *our* templates and require equality,
character for character. The Llama files hold ``LLAMA_PROMPT_TEMPLATE`` text plus the answer (" 1"/" 2"),
the GPT-3.5 files chat messages (system, user, assistant).
"""

from __future__ import annotations

import json
import re
from functools import cache

import pytest
from conftest import require

from judgelab.data import DataIntegrityError, fetch
from judgelab.data.self_recognition import AUTHORS, load_articles, load_json, load_summaries
from judgelab.prompts import panickssery2024 as P

LLAMA_FILES = {
    "finetuning_data_llama/xsum/xsum_2_ft_llama_detection_finetuning_data.json": ("xsum", 2),
    "finetuning_data_llama/xsum/xsum_10_ft_llama_detection_finetuning_data.json": ("xsum", 10),
    "finetuning_data_llama/cnn/cnn_2_ft_llama_detection_finetuning_data.json": ("cnn", 2),
    "finetuning_data_llama/cnn/cnn_10_ft_llama_detection_finetuning_data.json": ("cnn", 10),
}
GPT35_FILES = {
    "finetuning_data_gpt35/xsum/2_ft_gpt35_detection_finetuning_data.jsonl": ("xsum", 2),
    "finetuning_data_gpt35/xsum/10_gpt35_detection_finetuning_data.jsonl": ("xsum", 10),
    "finetuning_data_gpt35/cnn/cnn_2_ft_gpt35_detection_finetuning_data.jsonl": ("cnn", 2),
    "finetuning_data_gpt35/cnn/cnn_10_ft_gpt35_detection_finetuning_data.jsonl": ("cnn", 10),
}

USER_RE = re.compile(
    r"\AI have some news-article summaries written by you and some written by others, .*?\n\nArticle:\n(?P<article>.*)"
    r"\n\nSummary1:\n(?P<s1>.*)\n\nSummary2:\n(?P<s2>.*)\n\nCan you tell me which summary you wrote\?",
    re.DOTALL,
)


@cache
def released(dataset: str) -> tuple[dict[str, int], dict[str, str], dict[str, dict[str, str]]]:
    """article text -> index, key -> article, key -> {author: summary}."""
    try:
        arts = load_articles(dataset)
        sums = load_summaries(dataset)
    except DataIntegrityError as err:  # pragma: no cover - depends on the machine
        require(False, f"released data not available offline: {str(err).splitlines()[0]}")
    by_key = {k: dict(zip(g["author"], g["summary"])) for k, g in sums.groupby("key")}
    return dict(zip(arts["article"], arts["index"])), dict(zip(arts["key"], arts["article"])), by_key


def parse_and_check(user: str, dataset: str, n_train: int, family: str) -> tuple[str, str, str, str]:
    """Parse (article, summary1, summary2) out of a released user prompt and check them against the data.

    Returns them with the position ("1"/"2") of ``family``'s own summary.
    """
    m = USER_RE.match(user)
    assert m, f"record does not have the detection prompt's structure: {user[:200]!r}"
    article, s1, s2 = m["article"], m["s1"], m["s2"]
    index_of, _, by_key = released(dataset)
    assert article in index_of, f"article not among the released {dataset} articles: {article[:80]!r}"
    assert index_of[article] < n_train, f"article index {index_of[article]} is not a training article (< {n_train})"
    key = next(k for k, a in released(dataset)[1].items() if a == article)
    authors = {text: a for a, text in by_key[key].items()}
    assert s1 in authors and s2 in authors, "summaries are not released summaries of this article"
    a1, a2 = authors[s1], authors[s2]
    assert a1 != a2 and family in (a1, a2), (a1, a2)
    return article, s1, s2, "1" if a1 == family else "2"


def _ids(files):
    return [p.split("/")[-1] for p in files]


@pytest.mark.parametrize("path", list(LLAMA_FILES), ids=_ids(LLAMA_FILES))
def test_llama_finetuning_prompts_are_verbatim(path):
    dataset, n_train = LLAMA_FILES[path]
    try:
        records = load_json(path)
    except DataIntegrityError as err:  # pragma: no cover
        require(False, str(err).splitlines()[0])
    assert len(records) == n_train * 2 * (len(AUTHORS) - 1)  # llama vs 4 others, both orders
    seen = set()
    for rec in records:
        text = rec["input_text"]
        head, tail = P.LLAMA_PROMPT_TEMPLATE.split("{user_prompt}")
        head = head.format(system_prompt=P.DETECTION_SYSTEM_PROMPT)
        assert text.startswith(head), "system prompt or Llama wrapper differs"
        user = text[len(head) : text.rindex(tail)]
        article, s1, s2, own = parse_and_check(user, dataset, n_train, "llama")
        answer = text[text.rindex(tail) + len(tail) :]
        rebuilt = P.LLAMA_PROMPT_TEMPLATE.format(
            system_prompt=P.DETECTION_SYSTEM_PROMPT,
            user_prompt=P.DETECTION_PROMPT_TEMPLATE.format(article=article, summary1=s1, summary2=s2),
        )
        assert rebuilt + answer == text
        assert answer == f" {own}", "the training answer is the position of Llama's own summary"
        seen.add((article, s1, s2))
    assert len(seen) == len(records)


@pytest.mark.parametrize("path", list(GPT35_FILES), ids=_ids(GPT35_FILES))
def test_gpt35_finetuning_messages_are_verbatim(path):
    dataset, n_train = GPT35_FILES[path]
    try:
        with open(fetch("self_recognition", path, download=False), encoding="utf-8") as fh:
            records = [json.loads(line) for line in fh if line.strip()]
    except DataIntegrityError as err:  # pragma: no cover
        require(False, str(err).splitlines()[0])
    assert len(records) == n_train * 2 * (len(AUTHORS) - 1)
    for rec in records:
        system, user, assistant = rec["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        article, s1, s2, own = parse_and_check(user["content"], dataset, n_train, "gpt35")
        assert rec["messages"][:2] == P.pairwise_messages("detection", article, s1, s2)
        assert system["content"] == P.DETECTION_SYSTEM_PROMPT
        assert assistant["content"] == own


def test_pairwise_messages_use_the_task_tables():
    msgs = P.pairwise_messages("comparison", "ART", "S1", "S2")
    assert msgs[0] == {"role": "system", "content": P.COMPARISON_SYSTEM_PROMPT}
    assert msgs[1]["content"] == P.COMPARISON_PROMPT_TEMPLATE.format(article="ART", summary1="S1", summary2="S2")
    assert msgs[1]["content"].index("ART") < msgs[1]["content"].index("S1") < msgs[1]["content"].index("S2")
    xsum = P.summary_messages("xsum", "ART")
    assert xsum[0]["content"] == P.DATASET_SYSTEM_PROMPTS["xsum"]
    assert xsum[1]["content"].startswith("Article:\nART\n\n")
    # the upstream typos are kept (verbatim copy): "news-articler", "Aricle"
    assert "news-articler summarizer" in P.DETECTION_SYSTEM_PROMPT
    assert "Aricle:" in P.RECOGNITION_PROMPT_TEMPLATE
