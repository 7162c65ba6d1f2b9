"""Waiting for work handed to threads: the first failure stops the rest, once, in one place."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ALL_COMPLETED, FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TypeVar

from alex_models._platform import INTERRUPT_POLL
from alex_models.errors import Interrupted, exit_code_of

T = TypeVar("T")
R = TypeVar("R")


def results_or_first_error(
    futures: Sequence[Future[T]], on_failure: Callable[[], None] | None = None
) -> list[T]:
    """The results of ``futures``, in their order, once all are done.

    On the first failure, ``on_failure`` runs (to make the running ones stop soon), the ones not
    started are cancelled, the running ones are waited for, and that failure is raised: no thread
    is left working behind the caller's back.
    """
    done = _wait(futures, FIRST_EXCEPTION)
    failure = next((f.exception() for f in done if f.exception() is not None), None)
    if failure is not None:
        if on_failure is not None:
            on_failure()
        for future in futures:
            future.cancel()
        _wait(futures, ALL_COMPLETED)
        raise failure
    return [future.result() for future in futures]


def _wait(futures: Sequence[Future[T]], return_when: str) -> set[Future[T]]:
    """``concurrent.futures.wait`` in short waits: Ctrl-C cannot interrupt one without a timeout on
    Windows, so the main thread never blocks on one."""
    while True:
        done, pending = wait(futures, timeout=INTERRUPT_POLL, return_when=return_when)
        if not pending or (return_when == FIRST_EXCEPTION and any(f.exception() for f in done)):
            return done


def run_interruptibly(
    work: Callable[[T], R],
    items: Sequence[T],
    *,
    workers: int,
    stop: Callable[[], None],
    said: Callable[[list[Future[R]]], str],
    grace: float = 5.0,
    stop_on_failure: bool = False,
) -> list[R]:
    """``work`` on each of ``items``, ``workers`` at a time; the results in order.

    The first failure is raised once the running items are done (the others are not started;
    with ``stop_on_failure``, ``stop`` makes the running ones end soon). Ctrl-C or SIGTERM (a
    ``KeyboardInterrupt`` in this, the main thread) runs ``stop``, gives the running ones ``grace``
    seconds to wind down, and raises ``Interrupted`` with ``said(futures)`` (what was kept, how to go
    on) and the signal's exit code.
    """
    # Not a with-block: its exit would wait for every item to finish, even after Ctrl-C.
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures: list[Future[R]] = []
    try:
        futures.extend(pool.submit(work, item) for item in items)
        return results_or_first_error(futures, on_failure=stop if stop_on_failure else None)
    except KeyboardInterrupt as interrupt:
        stop()
        wait(futures, timeout=grace)
        raise Interrupted(said(futures), exit_code=exit_code_of(interrupt)) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
