"""The numerical-bias prompts: one text per task and range, the same for base and aligned models."""

from __future__ import annotations

import pytest

from judgelab.prompts import sato2026 as P

ITEMS = {
    "mtqe": {"pair": "ne-en", "source": "नमस्ते", "translation": "Hello"},
    "gecqe": {"source": "He go to school.", "output": "He goes to school."},
    "lcp": {"sentence": "The cell membrane is permeable.", "token": "permeable"},
    "summeval": {"article": "A long article.", "summary": "A summary."},
}


def test_marked_as_a_reconstruction():
    assert P.RECONSTRUCTION is True
    assert "did not publish" in P.SOURCE
    assert "RECONSTRUCTION" in P.__doc__


@pytest.mark.parametrize("task", P.TASKS)
@pytest.mark.parametrize("score_range", P.PAPER_RANGES)
def test_every_template_ends_where_the_score_begins(task, score_range):
    text = P.completion(task, ITEMS[task], score_range)
    lo, hi = score_range
    assert text.endswith("\nScore:")
    assert f"from {lo} to {hi}" in text
    assert f"score of {lo} means" in text and f"score of {hi} means" in text
    assert "{" not in text  # every placeholder filled
    for field in P.FIELDS[task]:
        if field != "pair":
            assert ITEMS[task][field] in text


def test_the_range_is_the_only_difference_between_ranges():
    a = P.completion("mtqe", ITEMS["mtqe"], (0, 10))
    b = P.completion("mtqe", ITEMS["mtqe"], (1, 100))
    assert a != b
    assert a.replace("0 to 10", "1 to 100").replace("score of 0 ", "score of 1 ").replace(
        "score of 10 ", "score of 100 ") == b


def test_chat_is_the_completion_text_as_the_user_turn():
    for task in P.TASKS:
        text = P.completion(task, ITEMS[task])
        assert P.chat(task, ITEMS[task]) == [{"role": "user", "content": text}]
        assert P.prompt(task, ITEMS[task], form="chat") == P.chat(task, ITEMS[task])
        assert P.prompt(task, ITEMS[task], form="completion") == text


def test_mtqe_names_the_languages_and_follows_gemba():
    text = P.completion("mtqe", ITEMS["mtqe"], (0, 100))
    assert text.startswith("Score the following translation from Nepali to English on a continuous scale")
    assert 'Nepali source: "नमस्ते"\nEnglish translation: "Hello"' in text
    assert '"no meaning preserved"' in text and '"perfect meaning and grammar"' in text


def test_aspects_and_units():
    assert "grammaticality" in P.completion("gecqe", ITEMS["gecqe"])
    assert "meaning preservation" in P.completion("gecqe", ITEMS["gecqe"], aspect="meaning")
    assert "coherence" in P.completion("summeval", ITEMS["summeval"], aspect="coherence")
    assert 'the word "permeable"' in P.completion("lcp", ITEMS["lcp"])
    multi = P.completion("lcp", {"sentence": "He has high walls.", "token": "high walls"})
    assert 'the expression "high walls"' in multi and 'Expression: "high walls"' in multi


@pytest.mark.parametrize(("call", "error", "match"), [
    (lambda: P.completion("mtqe", {"pair": "en-de", "source": "x"}), KeyError, "no field 'translation'"),
    (lambda: P.completion("mtqe", {**ITEMS["mtqe"], "translation": " "}), ValueError, "non-empty text"),
    (lambda: P.completion("mtqe", {**ITEMS["mtqe"], "pair": "en-xx"}), ValueError, "unknown language pair"),
    (lambda: P.completion("mtqe", ITEMS["mtqe"], (10, 0)), ValueError, "0 <= lo < hi"),
    (lambda: P.completion("mtqe", ITEMS["mtqe"], (0.5, 10)), ValueError, "two integers"),
    (lambda: P.completion("gecqe", ITEMS["gecqe"], aspect="style"), ValueError, "aspect must be one of"),
    (lambda: P.completion("qa", {}), ValueError, "task must be one of"),
    (lambda: P.prompt("lcp", ITEMS["lcp"], form="system"), ValueError, "form must be"),
])
def test_bad_input_says_what(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_renders_from_the_loaders_rows():
    pytest.importorskip("pandas")
    from judgelab.data import DataIntegrityError
    from judgelab.data import numerical_bias as nb

    try:
        rows = {"mtqe": nb.load_mlqe_pe("en-de").iloc[0], "gecqe": nb.load_tmu_gfm().iloc[0],
                "lcp": nb.load_complex("multi").iloc[0], "summeval": nb.load_summeval().iloc[0]}
    except DataIntegrityError as err:  # pragma: no cover - depends on the machine
        pytest.skip(f"data not available offline: {str(err).splitlines()[0]}")
    for task, row in rows.items():
        assert P.completion(task, row).endswith("Score:")


def test_base_and_aligned_see_the_same_text(smollm2):
    text = P.completion("mtqe", ITEMS["mtqe"])
    assert smollm2.render(text) == text  # the completion prompt, as it is
    rendered = smollm2.render(P.chat("mtqe", ITEMS["mtqe"]))
    assert text in rendered and rendered.index(text) > 0  # inside the chat template's user turn
    assert not rendered.endswith(text)  # followed by the assistant header
