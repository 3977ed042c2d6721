"""Shared test configuration: the ``--runslow`` switch and a session-wide small real model.

Tests marked ``slow`` (minutes: every zoo model, first-time conversions) are skipped unless pytest runs with
``--runslow`` or the environment has ``JUDGELAB_RUNSLOW=1``.
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


SMOLLM2 = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smollm2():
    """The smollm2 zoo model (offline GGUF, dequantised, CPU), loaded once per test session.

    Skips (does not fail) where the offline weights are not installed.
    """
    from judgelab.models import get_model
    from judgelab.models.zoo import zoo_entry

    entry = zoo_entry(SMOLLM2)
    if not entry.offline_available():
        pytest.skip(f"offline weights of {SMOLLM2} not installed: {entry.pip}")
    return get_model(f"zoo:{SMOLLM2}", device="cpu")


@pytest.fixture(scope="session")
def xsum_articles():
    """The released XSUM articles (verified data; skips where no copy of the data is reachable offline)."""
    from judgelab.data import DataIntegrityError
    from judgelab.data.self_recognition import load_articles

    try:
        return load_articles("xsum")
    except DataIntegrityError as err:  # pragma: no cover - depends on the machine
        pytest.skip(f"XSUM articles not available offline: {str(err).splitlines()[0]}")
