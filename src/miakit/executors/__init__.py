"""Where model jobs (`miakit.model_jobs`) run: in this process, in worker processes, or on Ray.

An executor runs a picklable function over tasks (here: groups of model indices), reports each
result or failure as it happens, and never lets one failed task stop the others.
"""

from __future__ import annotations

from miakit.executors.base import Executor, TaskFailure
from miakit.executors.local import LocalExecutor
from miakit.executors.processes import ProcessExecutor

__all__ = ["Executor", "LocalExecutor", "ProcessExecutor", "TaskFailure"]
