"""Per-test timeouts (pytest-timeout) that say which test hung and where its tasks wait.

A hang must fail the run with a stack, not wait out CI's limit.  pytest-timeout has two
methods, and only ``thread`` works here: ``signal`` raises from a SIGALRM handler in the
middle of trio's (or asyncio's) event loop, which breaks the loop's own state and then
pytest (INTERNALERROR), so the failure is lost.  ``thread`` dumps every thread's stack and
ends the run.  For an async test that stack ends in the event loop's ``epoll`` and says
nothing of the test, so this plugin sets the timer itself and, when it fires, first names
the test and prints where every live trio and asyncio task is waiting (its await
frames), then hands over to pytest-timeout's dump and exit.

The limit is ``timeout`` in ``[tool.pytest.ini_options]``; a test that needs longer says
so with ``@pytest.mark.timeout(seconds)``.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import traceback
from typing import TYPE_CHECKING, Any

import pytest
import trio
from pytest_timeout import timeout_timer

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import FrameType


def _await_stacks() -> Iterable[tuple[str, list[tuple[FrameType, int]]]]:
    """(task name, await frames) for every live trio and asyncio task.

    Read from the timer thread while the loop's thread is blocked in its poll; the
    tasks are found through the garbage collector, as a loop's own registry is reachable
    only from its thread."""
    for obj in gc.get_objects():
        if isinstance(obj, trio.lowlevel.Task):
            frames = list(obj.iter_await_frames())
            if frames:
                yield f"trio task {obj.name}", frames
        elif isinstance(obj, asyncio.Task) and not obj.done():
            # Task.get_stack() gives a suspended task's outermost frame only.
            yield f"asyncio task {obj.get_name()}", list(_coroutine_frames(obj.get_coro()))


def _coroutine_frames(coro: Any) -> Iterable[tuple[FrameType, int]]:
    """The frames of a suspended coroutine and of everything it awaits, outermost first
    (what trio's ``Task.iter_await_frames`` does for trio tasks)."""
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            return
        yield frame, frame.f_lineno
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)


def _expire(item: pytest.Item, settings: Any) -> None:
    terminal = item.config.get_terminal_writer()
    capman = item.config.pluginmanager.getplugin("capturemanager")
    if capman is not None:
        capman.suspend_global_capture(item)  # pytest-timeout reads the captured output
    terminal.sep("+", title=f"Timeout after {settings.timeout} s: {item.nodeid}")
    try:
        for name, frames in _await_stacks():
            terminal.sep("~", title=f"Await stack of {name}")
            terminal.write("".join(traceback.StackSummary.extract(frames).format()))
    except Exception:
        traceback.print_exc()
    terminal.flush()
    timeout_timer(item, settings)  # every thread's stack, then os._exit(1)


@pytest.hookimpl(tryfirst=True)
def pytest_timeout_set_timer(item: pytest.Item, settings: Any) -> bool | None:
    if settings.method != "thread":
        return None  # pytest-timeout's own handling
    timer = threading.Timer(settings.timeout, _expire, (item, settings))
    timer.name = f"timeout {item.nodeid}"
    timer.daemon = True

    def cancel() -> None:
        timer.cancel()
        timer.join()

    item.cancel_timeout = cancel  # type: ignore[attr-defined]  # pytest-timeout's cancel hook calls it
    timer.start()
    return True
