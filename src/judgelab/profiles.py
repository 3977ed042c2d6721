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
import re
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
        # What was computed live on the hardware each store's run record names; it meets the targets.
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


#: instruction-set extensions that decide how fast the CPU kernels of torch and llama.cpp run (x86: the vector
#: widths and fused multiply-add; AVX-512 and AMX come as families, kept whole; Arm: NEON dot products, SVE)
_ISA_EXACT = ("avx", "avx2", "fma", "f16c", "avx_vnni", "asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")
_ISA_FAMILIES = ("avx512", "amx")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of ``/proc/cpuinfo`` (empty where there is none: macOS, Windows)."""
    try:
        text = open("/proc/cpuinfo", encoding="utf-8", errors="replace").read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    return fields


def hardware_info() -> dict[str, object]:
    """What a live run ran on, read from the machine itself: CPU model, usable cores, ISA flags, GPU.

    ``isa`` is ``None`` where the flags could not be read (no ``/proc/cpuinfo``), which is not the same as
    an empty list (read, and none of the flags that matter present). ``cores`` counts the CPUs this process
    may run on (``sched_getaffinity``), ``logical_cpus`` all the machine has.
    """
    info = _cpuinfo()
    flags_field = info.get("flags") or info.get("Features")
    isa = None
    if flags_field is not None:
        isa = [f for f in flags_field.split() if f in _ISA_EXACT or f.startswith(_ISA_FAMILIES)]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cores = os.cpu_count()
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return {
        "cpu_model": info.get("model name") or platform.processor() or None,
        "arch": platform.machine(),
        "cores": cores,
        "logical_cpus": os.cpu_count(),
        "isa": isa,
        "gpu": gpu,
    }


def hardware(info: dict[str, object] | None = None) -> str:
    """A one-line description of the machine a live run used (recorded beside every result).

    ``cpu:MODEL xCORES (ARCH; FLAGS)``, prefixed by ``cuda:GPU; `` where a GPU is visible, e.g.
    ``cpu:Intel(R) Xeon(R) Processor x2 (x86_64; avx f16c avx2 fma avx512f ...)``. Prose about the
    hardware is generated from these records (:func:`describe_hardware`), never written by hand.
    """
    hw = info or hardware_info()
    isa = "ISA flags unread" if hw["isa"] is None else (" ".join(hw["isa"]) or "none of " + "/".join(_ISA_EXACT[:4]))
    cpu = f"cpu:{hw['cpu_model'] or 'unknown CPU model'} x{hw['cores']} ({hw['arch']}; {isa})"
    return f"cuda:{hw['gpu']}; {cpu}" if hw["gpu"] else cpu


_HARDWARE_RE = re.compile(
    r"^(?:cuda:(?P<gpu>[^;]+); )?cpu:(?P<model>.+) x(?P<cores>\d+) \((?P<arch>[^;]+); (?P<isa>.*)\)$")
_OLD_HARDWARE_RE = re.compile(r"^cpu:(?P<arch>[^\s()]+?)x(?P<cores>\d+)$")  # before the CPU model was recorded


def describe_hardware(recorded: str | None) -> str:
    """A phrase for the book from one recorded :func:`hardware` string: what the run recorded, nothing more.

    Records made before the CPU model and flags were kept (``cpu:x86_64x2``) say so rather than guess.
    """
    if not recorded:
        return "unrecorded hardware"
    m = _HARDWARE_RE.match(recorded)
    if m:
        isa = m["isa"].split()
        x86 = [f.upper().replace("_", "-") for f in isa if f in ("avx", "avx2", "fma", "f16c", "avx_vnni")]
        avx512 = [f for f in isa if f.startswith("avx512")]
        amx = [f for f in isa if f.startswith("amx")]
        parts = x86 + ([f"AVX-512 ({', '.join(avx512)})"] if avx512 else []) + ([f"AMX ({', '.join(amx)})"] if amx
                                                                                 else [])
        parts += [f for f in isa if f in ("asimd", "asimddp", "i8mm", "bf16", "sve", "sve2")]
        if m["isa"] == "ISA flags unread":
            flags = "instruction set not recorded"
        else:
            flags = "with " + (", ".join(parts) if parts else "none of AVX, AVX2, FMA, AVX-512")
        cpu = f"a {m['cores']}-core {m['model']} ({m['arch']}; {flags})"
        return f"GPU {m['gpu']}, with {cpu}" if m["gpu"] else cpu
    if recorded.startswith("cuda:") and ";" not in recorded:
        return f"GPU {recorded.removeprefix('cuda:')} (CPU not recorded)"
    m = _OLD_HARDWARE_RE.match(recorded)
    if m:
        return f"a {m['cores']}-core {m['arch']} CPU (recorded as `{recorded}`: model and instruction set not recorded)"
    return f"`{recorded}`"
