"""Progress of long stages: a live bar on a terminal; lines in a pipe or a CI log.

A live bar redraws itself in place, which a pipe or a log file cannot show: rich prints nothing
until the stage ends. So where the output is no terminal, each task prints a line at its start,
then at most every `interval` seconds as work completes, and at its end: done out of total, the
rate, and the time left at that rate, e.g. `training: 16/64 (25%), 0.41 per s, about 1m57s
left`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

#: Seconds between two progress lines of one task (the first and last are always printed).
LINE_INTERVAL = 10.0


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `1h02m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class _Task:
    description: str
    total: float | None
    completed: float = 0.0
    start: float = field(default_factory=lambda: time.monotonic())
    printed: float = 0.0  # when the last line was printed


class ProgressLines:
    """The subset of rich.progress.Progress the stages use (add_task, advance, update,
    console), printing lines instead of redrawing a bar."""

    def __init__(self, console: Console, interval: float = LINE_INTERVAL):
        self.console = console
        self.interval = interval
        self.tasks: list[_Task] = []

    def add_task(self, description: str, total: float | None = None) -> int:
        self.tasks.append(_Task(description, total))
        self._line(self.tasks[-1], force=True)
        return len(self.tasks) - 1

    def advance(self, task_id: int, advance: float = 1) -> None:
        task = self.tasks[task_id]
        self.update(task_id, completed=task.completed + advance)

    def update(
        self, task_id: int, completed: float | None = None, total: float | None = None
    ) -> None:
        task = self.tasks[task_id]
        if total is not None:
            task.total = total
        if completed is not None and completed != task.completed:
            task.completed = completed
            self._line(task, force=task.total is not None and completed >= task.total)

    def line(self, task_id: int) -> str:
        """The task's progress line: done/total (share), rate, time left."""
        task = self.tasks[task_id]
        done, total = task.completed, task.total
        text = f"{task.description}: {done:g}" + (f"/{total:g}" if total else "")
        if total:
            text += f" ({100 * done / total:.0f}%)"
        elapsed = time.monotonic() - task.start
        if done and elapsed > 0:
            rate = done / elapsed
            text += f", {rate:.3g} per s" if rate >= 0.1 else f", {1 / rate:.3g} s each"
            if total and done < total:
                text += f", about {duration((total - done) / rate)} left"
            elif total:
                text += f", done in {duration(elapsed)}"
        return text

    def _line(self, task: _Task, force: bool) -> None:
        now = time.monotonic()
        if force or now - task.printed >= self.interval:
            task.printed = now
            self.console.print(self.line(self.tasks.index(task)), highlight=False)


@contextmanager
def progress(console: Console | None = None) -> Iterator[Progress | ProgressLines]:
    """A live bar on a terminal, else ProgressLines."""
    console = console or Console()
    if not console.is_terminal:
        yield ProgressLines(console)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        yield bar


def tracked(items: Iterable, description: str) -> Iterator:
    """Yield `items`, showing progress (`progress`) as each one's work ends."""
    items = list(items)
    with progress() as bar:
        task = bar.add_task(description, total=len(items))
        for item in items:
            yield item
            bar.advance(task)
