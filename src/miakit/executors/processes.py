"""Tasks in several local worker processes (e.g. one per GPU, or one per pair of CPU cores).

Workers are started with `spawn`, so they share nothing with the parent but what is pickled. A
worker that dies (killed, out of memory) breaks Python's process pool and takes every task in
flight down with it, the innocent ones too. Those tasks are retried one at a time, each in a
fresh single-worker pool (up to `retries` times), so only a task that kills its worker again
counts as failed.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from miakit.executors.base import Executor, OnFailure, TaskFailure, record_failure


def _limit_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class ProcessExecutor(Executor):
    def __init__(self, workers: int, threads_per_worker: int = 1, retries: int = 1):
        self.workers = workers
        self.threads_per_worker = threads_per_worker
        self.retries = retries

    def run(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        on_result: Callable[[Any, Any], None],
        on_failure: OnFailure = None,
    ) -> list[TaskFailure]:
        failures: list[TaskFailure] = []
        crashed = self._round(fn, tasks, self.workers, on_result, on_failure, failures)
        for task in crashed:
            for _ in range(self.retries):
                if not self._round(fn, [task], 1, on_result, on_failure, failures):
                    break
            else:
                record_failure(failures, on_failure, task, "its worker process died")
        return failures

    def _round(
        self,
        fn: Callable[[Any], Any],
        tasks: Sequence[Any],
        workers: int,
        on_result: Callable[[Any, Any], None],
        on_failure: OnFailure,
        failures: list[TaskFailure],
    ) -> list[Any]:
        """Run `tasks` in one pool; returns those lost to a dead worker."""
        crashed = []
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_limit_threads,
            initargs=(self.threads_per_worker,),
        ) as pool:
            futures = {pool.submit(fn, task): task for task in tasks}
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    task = futures.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool:
                        crashed.append(task)
                    except Exception as exc:
                        record_failure(failures, on_failure, task, exc)
                    else:
                        on_result(task, result)
        return crashed
