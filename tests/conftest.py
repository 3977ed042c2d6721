"""Shared test configuration: the ``--runslow`` switch, :func:`require`, and a session-wide small real model.

Tests marked ``slow`` (minutes: every zoo model, first-time conversions) are skipped unless pytest runs with
``--runslow`` or the environment has ``JUDGELAB_RUNSLOW=1``.

A test that needs something a machine may lack (the data mirror, offline weights, llama-cpp-python) calls
:func:`require`: on a developer's machine the test is skipped with the reason, but in CI (``CI=true``, which
GitHub Actions and most CI services set) a missing tool or data set is a broken install, so the test fails
with the same reason instead of vanishing from the report.
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False,
        help="run tests marked slow (also: JUDGELAB_RUNSLOW=1)",
    )


def runslow(config: pytest.Config) -> bool:
    return bool(config.getoption("--runslow")) or os.environ.get("JUDGELAB_RUNSLOW") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if runslow(config):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or JUDGELAB_RUNSLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def in_ci() -> bool:
    """Whether the tests run in CI (``CI=true``), where nothing they need may be missing."""
    return os.environ.get("CI", "").strip().lower() == "true"


def require(condition: object, reason: str, *, allow_module_level: bool = False) -> None:
    """Skip (locally) or fail (in CI, ``CI=true``) with ``reason`` unless ``condition`` holds."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a requirement is missing: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2():
    """The smollm2 zoo model (offline GGUF, dequantised, CPU), loaded once per test session.

    Skips where the offline weights are not installed (fails in CI: see :func:`require`).
    """
    from judgelab.models import get_model
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry(SMOLLM2)
    require(entry.offline_available(), f"offline weights of {SMOLLM2} not installed: {entry.pip}")
    return get_model(f"zoo:{SMOLLM2}", device="cpu")


@pytest.fixture(scope="session")
def xsum_articles():
    """The released XSUM articles (verified data; skips where no copy of the data is reachable offline,
    fails in CI)."""
    from judgelab.data import DataIntegrityError
    from judgelab.data.self_recognition import load_articles

    try:
        return load_articles("xsum")
    except DataIntegrityError as err:  # pragma: no cover - depends on the machine
        require(False, f"XSUM articles not available offline: {str(err).splitlines()[0]}")
