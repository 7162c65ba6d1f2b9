"""Waiting for work handed to threads: the first failure stops the rest, once, in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import TypeVar

T = TypeVar("T")


def results_or_first_error(
    futures: Sequence[Future[T]], on_failure: Callable[[], None] | None = None
) -> list[T]:
    """The results of ``futures``, in their order, once all are done.

    On the first failure, ``on_failure`` runs (to make the running ones stop soon), the ones not
    started are cancelled, the running ones are waited for, and that failure is raised: no thread
    is left working behind the caller's back.
    """
    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
    failure = next((f.exception() for f in done if f.exception() is not None), None)
    if failure is not None:
        if on_failure is not None:
            on_failure()
        for future in futures:
            future.cancel()
        wait(futures)
        raise failure
    return [future.result() for future in futures]
