"""Tasks one after another in this process: the default, and what tests and debuggers want."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from miakit.executors.base import Executor, OnFailure, TaskFailure, record_failure


class LocalExecutor(Executor):
    def run(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        on_result: Callable[[Any, Any], None],
        on_failure: OnFailure = None,
    ) -> list[TaskFailure]:
        failures = []
        for task in tasks:
            try:
                result = fn(task)
            except Exception as exc:  # one failed model must not stop the others
                record_failure(failures, on_failure, task, exc)
            else:
                on_result(task, result)
        return failures
