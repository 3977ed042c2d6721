"""judgelab: a reproducible replication of three studies of LLMs used as judges.

Layers, each depending only on the ones before it:
``data`` (verified sources) -> ``prompts`` (the papers' templates) -> ``models`` (one interface) ->
``store`` (every call recorded) -> ``experiments`` -> ``stats`` -> ``plots``; notebooks import from here.
"""

__version__ = "0.1.0"
