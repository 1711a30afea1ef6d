"""Fixtures for gorun integration tests: a factory that starts the real `gorun` and cleans up."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.gorun.harness import Gorun


@pytest.fixture
def gorun(tmp_path: Path) -> Iterator[Callable[..., Gorun]]:
    started: list[Gorun] = []

    def start(*args: str, **kw: Any) -> Gorun:
        g = Gorun(tmp_path, list(args), **kw)
        started.append(g)
        return g
    yield start
    for g in started:
        g.close()
