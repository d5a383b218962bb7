"""The executor contract."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TaskFailure:
    task: Any
    error: str


OnFailure = Callable[[TaskFailure], None] | None


def record_failure(
    failures: list[TaskFailure], on_failure: OnFailure, task: Any, error: str | Exception
) -> None:
    """Keep the failure for the caller's summary and report it at once; an exception is
    described as `Type: message`."""
    if isinstance(error, Exception):
        error = f"{type(error).__name__}: {error}"
    failure = TaskFailure(task, error)
    failures.append(failure)
    if on_failure is not None:
        on_failure(failure)


class Executor(ABC):
    @abstractmethod
    def run(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        on_result: Callable[[Any, Any], None],
        on_failure: OnFailure = None,
    ) -> list[TaskFailure]:
        """Run fn(task) for every task; call on_result(task, result) or on_failure(failure) as
        each finishes (in this process); return the failures once every task has had its
        chance."""
