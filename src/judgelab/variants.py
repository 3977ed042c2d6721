"""How the fine-tuning experiment's variants are named and grouped, for every layer that shows them.

A variant is a digit string (a recognition fine-tune on that many training articles), a control's name
(``always_1``, ``random``, ``length``, ``vowelcount``, ``readability``: trained on the profile's
``control_n`` articles), a control at a size of its own (``always_1@500``: the control trained on 500
articles, so that a paper-size control can stand beside a paper-size recognition variant while the grid's
other controls stay small) or ``base`` (the untouched judge).
Both the experiment (:mod:`judgelab.experiments.finetuning`, which re-exports these) and the figures
(:mod:`judgelab.plots`, which must not import the experiments) need the same rule, so it lives here, below
both.
"""

from __future__ import annotations


def split_variant(variant: str) -> tuple[str, int | None]:
    """``"always_1@500"`` -> ``("always_1", 500)``; a variant without ``@N`` -> ``(variant, None)``."""
    name, at, size = variant.partition("@")
    if not at:
        return variant, None
    if not size.isdigit() or not name or name.isdigit() or name == "base":
        raise ValueError(f"variant {variant!r}: a size of its own is written CONTROL@N, e.g. always_1@500")
    return name, int(size)


def variant_kind(variant: str) -> str:
    """``"base"``, ``"recognition"`` (a digit string: N training articles) or ``"control"``."""
    if variant == "base":
        return "base"
    return "recognition" if variant.isdigit() else "control"


def variant_label(variant: str, sep: str = " = ") -> str:
    """How figures name a variant: ``N = 50`` for a recognition variant, the control's own name otherwise
    (``always_1 (N = 500)`` for a control at a size of its own)."""
    if variant_kind(variant) == "recognition":
        return f"N{sep}{variant}"
    name, size = split_variant(variant)
    return name if size is None else f"{name} (N{sep}{size})"
