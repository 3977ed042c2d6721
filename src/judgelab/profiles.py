"""Run profiles: how big each experiment is and which models it uses, in one table.

Every notebook has a ``PROFILE`` parameter:

========  ============================================================================================
``ci``    tiny and live on CPU: a handful of articles, the smallest zoo judge; runs in the tests
``book``  replay of the committed call store under ``results/``: the numbers the book shows, no model
``gpu``   full scale on CUDA or Colab: all 500 held-out articles, hub models (edit the list)
``api``   OpenAI chat models through the same code (needs ``OPENAI_API_KEY``)
========  ============================================================================================

The ``book`` profile is what was *computed* live (on the hardware named in the results) and is then
replayed by everyone else; ``JUDGELAB_LIVE=1`` makes it compute whatever its store is missing.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field

PROFILES = ("ci", "book", "gpu", "api")


@dataclass(frozen=True)
class OpenModelsProfile:
    """Sizes of the open-models self-recognition experiment (chapter 3)."""

    name: str
    #: judge model strings (see :func:`judgelab.models.get_model`) -> held-out articles per dataset
    judges: dict[str, int]
    #: models that write summaries of more articles than they judge -> articles per dataset they summarise
    #: (a judge summarises at least the articles it judges). Writing is cheap next to judging, so a slow
    #: model can still be "the other author" for the other judges on many articles -- the sibling contrast
    #: needs exactly that. A model named only here writes summaries and judges nothing.
    summaries: dict[str, int] = field(default_factory=dict)
    datasets: tuple[str, ...] = ("xsum", "cnn")
    #: evaluation starts at this article index: keys[500:] are held out from fine-tuning (keys[:500])
    first_article: int = 500
    replay: bool = False
    device: str | None = None
    chunk_size: int = 64
    extra: dict[str, object] = field(default_factory=dict)
    #: the sizes the experiment is designed for (issue 4); a profile computed on weaker hardware may fall short
    targets: dict[str, int] = field(default_factory=dict)

    def shortfall(self) -> dict[str, tuple[int, int]]:
        """Judges run on fewer articles than designed: name -> (articles run, articles designed for).

        The chapter prints this so that a reader sees which intervals are wider than planned, and why.
        """
        return {j: (n, self.targets[j]) for j, n in self.judges.items() if n < self.targets.get(j, 0)}

    def writers(self) -> dict[str, int]:
        """Every model that writes summaries -> held-out articles per dataset it summarises (judges first)."""
        names = list(self.judges) + [m for m in self.summaries if m not in self.judges]
        return {m: max(self.judges.get(m, 0), self.summaries.get(m, 0)) for m in names}


OPEN_MODELS: dict[str, OpenModelsProfile] = {
    "ci": OpenModelsProfile("ci", {"smollm2-135m-instruct": 2}, replay=False),
    "book": OpenModelsProfile(
        "book",
        # What was computed on this project's 2-core CPU (AVX, no AVX2; no GPU lent); it meets the targets.
        # Should a target rise, the stores resume: extend one judge with
        # `judgelab run open-models --profile book --extend NAME=N`, then raise its number here.
        {"smollm2-135m-instruct": 200, "qwen2.5-coder-0.5b-instruct": 200, "qwen2.5-coder-1.5b-instruct": 50},
        replay=True,
        targets={"smollm2-135m-instruct": 200, "qwen2.5-coder-0.5b-instruct": 200, "qwen2.5-coder-1.5b-instruct": 50},
    ),
    "gpu": OpenModelsProfile(
        "gpu",
        {"hf:Qwen/Qwen2.5-7B-Instruct": 500, "hf:meta-llama/Llama-3.1-8B-Instruct": 500},
        device="cuda",
    ),
    "api": OpenModelsProfile("api", {"openai:gpt-4o-mini": 100}),
}


def open_models_profile(name: str) -> OpenModelsProfile:
    if name not in OPEN_MODELS:
        raise ValueError(f"unknown profile {name!r}; choose one of {PROFILES}")
    prof = OPEN_MODELS[name]
    if prof.replay and os.environ.get("JUDGELAB_LIVE") == "1":
        from dataclasses import replace

        prof = replace(prof, replay=False)
    return prof


def hardware() -> str:
    """A short description of the machine a live run used (recorded beside every result)."""
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:  # pragma: no cover
        pass
    return f"cpu:{platform.machine()}x{os.cpu_count()}"
