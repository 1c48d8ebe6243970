"""An asyncio event loop on a virtual clock, for tests of timing rules (watchdog pings, lingering).

The loop's clock stands still while callbacks run and jumps to the next timer when nothing is
ready: `asyncio.sleep(0.005)` takes exactly 5 ms of loop time however loaded the machine is,
and takes no real time at all. Sockets still work (a loopback server in the same loop answers),
because the loop polls them before each jump; a wait with no timer blocks for real.

    run(main())                  # like asyncio.run, on the virtual clock
    loop_clock()                 # the running loop's time(), for code that reads time.monotonic()
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Selector(selectors.DefaultSelector):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer: only I/O can wake the loop
            return super().select(None)
        self.now += timeout  # nothing to do until the next timer: skip to it
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._vselector = _Selector()
        super().__init__(self._vselector)

    def time(self) -> float:
        return self._vselector.now


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)


def loop_clock() -> float:
    return asyncio.get_running_loop().time()
