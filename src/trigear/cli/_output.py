"""Where ``trigear submit`` writes: job output to stdout, messages to stderr, and on a
terminal a live progress bar (Rich) that follows WORK_STATUS.

* Job output is bytes and is written as it arrives, unchanged, to the real standard
  output -- unless standard output is the terminal the bar is drawn on: then it is
  printed above the bar a line at a time (a partial line waits for its end, or for the
  job's end), so the two never garble each other.
* The bar is drawn on standard error, only when standard error is a terminal, and is
  removed when the command ends (``transient``): what stays on screen is the output.
* Messages (failures, warnings) go to standard error, above the bar when there is one.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, BinaryIO

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["Output"]


class Output:
    """Job output, messages and the optional progress display of one command run."""

    def __init__(self, prog: str, *, progress: bool, jobs: int) -> None:
        self.prog = prog
        self._stdout: BinaryIO = sys.stdout.buffer
        self._progress: Progress | None = None
        self._job_task: TaskID | None = None
        self._lines_task: TaskID | None = None
        self._pending = b""
        #: Whether the current job's output so far ends a line (an empty one does not).
        self._ends_line = False
        self._through_console = False
        if progress:
            self._start(jobs)

    def _start(self, jobs: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._through_console = sys.stdout.isatty()
        if jobs > 1:
            self._lines_task = self._progress.add_task("jobs done", total=jobs)
        self._progress.start()

    # -- one job --

    def job_started(self, description: str) -> None:
        self._ends_line = False
        if self._progress is None:
            return
        if self._job_task is not None:
            self._progress.remove_task(self._job_task)
        self._job_task = self._progress.add_task(description, total=None)

    def status(self, numerator: int, denominator: int) -> None:
        if self._progress is not None and self._job_task is not None:
            self._progress.update(self._job_task, completed=numerator, total=denominator or None)

    def data(self, chunk: bytes) -> None:
        """Job output, as it arrives."""
        if not chunk:
            return
        self._ends_line = chunk.endswith(b"\n")
        if not self._through_console:
            self._stdout.write(chunk)
            self._stdout.flush()
            return
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            self._print_line(line)

    def job_ended(self, *, newline: bool) -> None:
        """A job's output is complete; ``newline`` ends it with one if it has none."""
        if self._through_console:
            if self._pending or (newline and not self._ends_line):
                self._print_line(self._pending)
            self._pending = b""
        elif newline and not self._ends_line:
            self._stdout.write(b"\n")
            self._stdout.flush()
        if self._progress is not None:
            if self._lines_task is not None:
                self._progress.advance(self._lines_task)
            if self._job_task is not None:
                self._progress.remove_task(self._job_task)
                self._job_task = None

    def _print_line(self, line: bytes) -> None:
        from rich.text import Text

        assert self._progress is not None
        self._progress.console.print(Text(line.decode(errors="replace")), soft_wrap=True)

    # -- messages --

    def message(self, text: str) -> None:
        """One line on standard error (above the bar, if there is one)."""
        line = f"{self.prog}: {text}"
        if self._progress is not None:
            from rich.text import Text

            self._progress.console.print(Text(line), soft_wrap=True)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self._through_console and self._pending:
            self._print_line(self._pending)
            self._pending = b""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
