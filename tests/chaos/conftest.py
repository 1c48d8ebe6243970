"""A scenario that fails midway must not leave its writer appending to a log file for ever."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chaos.scenarios import Writer


@pytest.fixture(autouse=True)
def no_writer_left() -> Iterator[None]:
    yield
    for writer in list(Writer.running):
        writer.kill()
