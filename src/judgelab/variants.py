"""How the fine-tuning experiment's variants are named and grouped, for every layer that shows them.

A variant is a digit string (a recognition fine-tune on that many training articles), a control's name
(``always_1``, ``random``, ``length``, ``vowelcount``, ``readability``) or ``base`` (the untouched judge).
Both the experiment (:mod:`judgelab.experiments.finetuning`, which re-exports these) and the figures
(:mod:`judgelab.plots`, which must not import the experiments) need the same rule, so it lives here, below
both.
"""

from __future__ import annotations


def variant_kind(variant: str) -> str:
    """``"base"``, ``"recognition"`` (a digit string: N training articles) or ``"control"``."""
    if variant == "base":
        return "base"
    return "recognition" if variant.isdigit() else "control"


def variant_label(variant: str, sep: str = " = ") -> str:
    """How figures name a variant: ``N = 50`` for a recognition variant, the control's own name otherwise."""
    return f"N{sep}{variant}" if variant_kind(variant) == "recognition" else variant
