"""The judge prompts of Ye & Ng (2024), "Self-Judge: Selective Instruction Following with Alignment
Self-Evaluation" (arXiv 2409.00935), verbatim.

Source: ``judge.py`` of github.com/nusnlp/Self-J (the issue cites commit f0d596c; the copy read for this module
is the file as stored at commit 7a2092e950137ec160572c4ebd84776da60e5dd6, the only version of ``judge.py`` in
the repository's history we could read). Its ``template_w_ref`` and ``template_wo_ref`` are copied character
for character, including the literal space before the first ``\\n\\n`` and the placeholder names
(``{instruction}`` the question, ``{reference}``, ``{input}`` the answer being judged).

The reference-free prompt is *not* the reference prompt with its reference sentence and block cut out: the
authors also changed "Respond with" to "Please respond with". Both are kept as released.

How the paper reads the score (``judge.py``, ``evaluate``): the judge's top-20 log-probabilities at the first
generated position; the probabilities of the ten digit tokens 0-9 (Llama ids 29900, 29896, ...; a digit not
in the top 20 counts 0), renormalised over the ten, and the score is ``sum(d * p(d))``. Its code scores an
answer 0 when that fails; this book counts such an answer invalid instead
(:func:`judgelab.experiments.self_judge.selfeval.expected_digit`).

Wrapping. ``judge.py`` hands the bare prompt to vLLM (a completion prompt, no chat template); its judges
were fine-tuned on prompts in the WizardLM template (``templates/wizardlm.json``: ``{instruction}\\n\\n###
Response:``). For untrained zoo instruct models, :func:`chat` puts the prompt in the user turn, so the model's
own chat template ends where the answer begins; :func:`completion` gives the bare text.
"""

from __future__ import annotations

from judgelab.models.base import Message

SOURCE = "https://github.com/nusnlp/Self-J/blob/f0d596c/judge.py (template_w_ref, template_wo_ref)"
SOURCE_COMMIT_READ = "7a2092e950137ec160572c4ebd84776da60e5dd6"

#: ``template_w_ref`` of judge.py, verbatim
TEMPLATE_WITH_REFERENCE = (
    "Please act as a precise judge and evaluate the quality of the answer to question. Rate the answer from 0 "
    "to 9, where a higher value means a better answer. Please refer to the reference answer to make your "
    "judgement. Respond with an integer between 0 and 9. \n\n[Question]\n{instruction}\n\n[Reference]\n"
    "{reference}\n\n[Answer]\n{input}"
)

#: ``template_wo_ref`` of judge.py, verbatim
TEMPLATE_WITHOUT_REFERENCE = (
    "Please act as a precise judge and evaluate the quality of the answer to question. Rate the answer from 0 "
    "to 9, where a higher value means a better answer. Please respond with an integer between 0 and 9. "
    "\n\n[Question]\n{instruction}\n\n[Answer]\n{input}"
)

#: the answer options whose next-token probabilities make the score, in value order
DIGITS: tuple[str, ...] = tuple(str(d) for d in range(10))
#: the scale's ends
SCALE: tuple[int, int] = (0, 9)


def _text(value: str, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be text, not {type(value).__name__}")
    return value


def judge_prompt(question: str, answer: str, reference: str | None = None) -> str:
    """The paper's judge prompt for one answer: with the reference when one is given, else reference-free.

    ``str.format`` is applied to the template only, so braces inside the question, reference or answer
    (code, JSON) are kept as they are. An empty reference is refused: it would silently turn a
    reference-based judgement into one against nothing.
    """
    q, a = _text(question, "question"), _text(answer, "answer")
    if reference is None:
        return TEMPLATE_WITHOUT_REFERENCE.format(instruction=q, input=a)
    r = _text(reference, "reference")
    if not r.strip():
        raise ValueError("reference is empty; pass reference=None for the reference-free prompt")
    return TEMPLATE_WITH_REFERENCE.format(instruction=q, reference=r, input=a)


def chat(question: str, answer: str, reference: str | None = None) -> list[Message]:
    """The prompt as the user turn of a chat (the model's chat template adds the rest)."""
    return [{"role": "user", "content": judge_prompt(question, answer, reference)}]


def completion(question: str, answer: str, reference: str | None = None) -> str:
    """The bare prompt, as ``judge.py`` passes it to vLLM."""
    return judge_prompt(question, answer, reference)


# --- best-of-N rating: a RECONSTRUCTION, not the paper's prompt -------------------------------------------------
#: The paper rates best-of-N answers with AlpacaEval (GPT-4 annotators and their own prompts, not in the Self-J
#: repository). Offline we need a pairwise prompt for a zoo rater; this one is ours, written in the plain style
#: of the judge prompt above and answered with the next-token probabilities of "1" and "2". Marked as a
#: reconstruction wherever it is used.
PAIRWISE_RECONSTRUCTED = True
PAIRWISE_TEMPLATE = (
    "Please act as a precise judge and compare the quality of two answers to the question. Which answer is "
    "better? Respond with 1 or 2.\n\n[Question]\n{instruction}\n\n[Answer 1]\n{answer1}\n\n[Answer 2]\n{answer2}"
)
PAIRWISE_OPTIONS: tuple[str, str] = ("1", "2")


def pairwise_chat(question: str, answer1: str, answer2: str) -> list[Message]:
    """The (reconstructed) pairwise rating prompt as the user turn; braces in the texts are kept."""
    q, a1, a2 = _text(question, "question"), _text(answer1, "answer1"), _text(answer2, "answer2")
    return [{"role": "user", "content": PAIRWISE_TEMPLATE.format(instruction=q, answer1=a1, answer2=a2)}]
