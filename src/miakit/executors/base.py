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


class Executor(ABC):
    @abstractmethod
    def run(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        on_result: Callable[[Any, Any], None],
    ) -> list[TaskFailure]:
        """Run fn(task) for every task; call on_result(task, result) as each finishes (in this
        process); return the tasks that failed, after every other task has had its chance."""
