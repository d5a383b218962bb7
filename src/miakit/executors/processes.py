"""Tasks in several local worker processes (e.g. one per GPU, or one per pair of CPU cores).

Workers are started with `spawn`, so they share nothing with the parent but what is pickled. A
worker that dies (killed, out of memory) breaks Python's process pool; the tasks it took down with
it are retried in a fresh pool, up to `retries` times each, before they count as failed.
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
        attempts = dict.fromkeys(range(len(tasks)), 0)
        pending = list(range(len(tasks)))
        while pending:
            crashed = []
            with ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_limit_threads,
                initargs=(self.threads_per_worker,),
            ) as pool:
                futures = {pool.submit(fn, tasks[i]): i for i in pending}
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        i = futures.pop(future)
                        attempts[i] += 1
                        try:
                            result = future.result()
                        except BrokenProcessPool:
                            crashed.append(i)
                        except Exception as exc:
                            record_failure(
                                failures, on_failure, tasks[i], f"{type(exc).__name__}: {exc}"
                            )
                        else:
                            on_result(tasks[i], result)
            pending = [i for i in crashed if attempts[i] <= self.retries]
            for i in crashed:
                if attempts[i] > self.retries:
                    record_failure(failures, on_failure, tasks[i], "its worker process died")
        return failures
