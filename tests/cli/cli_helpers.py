"""Helpers for the command tests: run ``python -m trigear ...`` as a user would, on pipes
or on a pseudo-terminal read through a terminal emulator (pyte), and run a worker."""

from __future__ import annotations

import fcntl
import functools
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio.from_thread
import pyte

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import trigear

TRIGEAR = [sys.executable, "-m", "trigear"]


def trigear_cli(
    *args: str, stdin: bytes = b"", timeout: float = 60
) -> subprocess.CompletedProcess[bytes]:
    """``python -m trigear ARGS`` on pipes; what it printed and its status."""
    return subprocess.run(
        [*TRIGEAR, *args], input=stdin, capture_output=True, timeout=timeout, env=plain_env()
    )


def plain_env(**extra: str) -> dict[str, str]:
    """The environment without what changes how Rich draws (sizes, colour forcing)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("COLUMNS", "LINES", "FORCE_COLOR", "NO_COLOR", "TERM", "PYTHONWARNINGS")
    }
    return {**env, **extra}


@contextmanager
def running(worker: trigear.Worker, concurrency: int = 4) -> Iterator[None]:
    """Run ``worker`` on its own loop thread for the block's duration."""
    with anyio.from_thread.start_blocking_portal("trio") as portal:
        future, _ = portal.start_task(functools.partial(worker.run, concurrency=concurrency))
        try:
            yield
        finally:
            future.cancel()


@dataclass
class Terminal:
    """A process whose output goes to a pseudo-terminal, rendered by pyte as a screen."""

    proc: subprocess.Popen[bytes]
    master: int
    screen: pyte.Screen
    stream: pyte.ByteStream
    raw: bytearray = field(default_factory=bytearray)

    def pump(self, wait: float = 0.05) -> None:
        """Read whatever the program wrote within ``wait`` seconds."""
        while True:
            ready, _, _ = select.select([self.master], [], [], wait)
            if not ready:
                return
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the program closed the terminal
                return
            if not data:
                return
            self.raw += data
            self.stream.feed(data)
            wait = 0

    @property
    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(
        self, predicate: Callable[[str], bool], timeout: float = 20, what: str = ""
    ) -> str:
        """Pump until ``predicate(screen text)`` holds; return that screen."""
        deadline = time.monotonic() + timeout
        while True:
            self.pump()
            text = self.text
            if predicate(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}; screen:\n{text}")

    def send(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def finish(self, timeout: float = 20) -> int:
        """Wait for the program to exit, reading all it wrote; its exit status."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            self.pump()
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"still running after {timeout}s; screen:\n{self.text}")
        self.pump()
        return self.proc.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        os.close(self.master)


def _take_terminal(fd: int) -> None:
    """In the child: a new session whose controlling terminal is the pty ``fd``."""
    os.setsid()
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


@contextmanager
def on_terminal(
    *args: str, cols: int = 100, rows: int = 30, stdin: Any = None, stdout_pipe: bool = False
) -> Iterator[Terminal]:
    """Run ``python -m trigear ARGS`` with its stderr (and stdout, and stdin unless one
    is given) on a pseudo-terminal of ``cols`` x ``rows``."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = subprocess.Popen(
        [*TRIGEAR, *args],
        stdin=slave if stdin is None else stdin,
        stdout=subprocess.PIPE if stdout_pipe else slave,
        stderr=slave,
        env=plain_env(TERM="xterm-256color"),
        # A session of its own with the terminal as its controlling terminal, so a
        # Ctrl-C typed into it is a SIGINT to the program, as in a real terminal.
        preexec_fn=functools.partial(_take_terminal, slave),
    )
    os.close(slave)
    screen = pyte.Screen(cols, rows)
    term = Terminal(proc, master, screen, pyte.ByteStream(screen))
    try:
        yield term
    finally:
        term.close()
