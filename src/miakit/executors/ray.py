"""Tasks on a Ray cluster: one task per group of models, fractional GPUs for small models.

The run directory must be on storage every Ray node sees: workers write their models' files
straight into it, and the driver only counts what finished. Ray retries tasks whose worker died.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from miakit.errors import MiakitError
from miakit.executors.base import Executor, OnFailure, TaskFailure, record_failure


def _call(fn: Callable[[Any], Any], task: Any) -> Any:
    return fn(task)


class RayExecutor(Executor):
    def __init__(
        self,
        address: str | None,
        cpus_per_task: float = 1,
        gpus_per_task: float = 0,
        retries: int = 1,
    ):
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.retries = retries

    def run(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        on_result: Callable[[Any, Any], None],
        on_failure: OnFailure = None,
    ) -> list[TaskFailure]:
        try:
            import ray
        except ImportError as exc:
            raise MiakitError(
                "execution.executor is 'ray' but Ray is not installed: pip install 'miakit[ray]'"
            ) from exc
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        try:
            remote = ray.remote(
                num_cpus=self.cpus_per_task,
                num_gpus=self.gpus_per_task,
                max_retries=self.retries,
            )(_call)
            refs = {remote.remote(fn, task): task for task in tasks}
            failures = []
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1)
                task = refs.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                except Exception as exc:  # RayTaskError wraps the task's own exception
                    record_failure(failures, on_failure, task, exc)
                else:
                    on_result(task, result)
            return failures
        finally:
            if started_here:
                ray.shutdown()
