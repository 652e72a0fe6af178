"""Group commit of finished claims: the records of the Vapi writes each visit made and the
fenced completion of each work row and, for those still ours, the organization's status and
``org_tools``, in one transaction per group.

Whoever finishes while a commit is running waits for the next one, which carries everybody
then waiting. While visits finish one after another (a rollout, a cold start), group commits
start at most every ``COMMIT_SPACING_SECONDS``, so each carries the visits that finished
since. A resync of thousands of organizations costs a few hundred transactions instead of
one per organization, and a lone change is committed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.keys import WorkKey
from controller.reconcile.status import Recorded, record_outcomes, record_writes
from desired_state import queue
from desired_state.direct import direct
from desired_state.queue import Completion
from desired_state.shape import engine_shape

COMMIT_ATTEMPTS = 3
"""Tries of a group commit that Postgres chose as a deadlock's (or a serialization
failure's) victim."""
COMMIT_SPACING_SECONDS = 0.1
"""A group commit starts at least this long after the previous one began, unless
``GROUP_ENOUGH`` rows are waiting. At a cold start's 50 organizations a second, groups were
of one organization each (a commit takes a few milliseconds) and cost 0.65 ms of the
daemon's CPU per Vapi write; spaced, a group carries about five. Only the status and the
records wait for it: the visit has given back its slot and its Vapi writes are done."""
GROUP_ENOUGH = 64
"""Rows waiting that make a group worth committing at once."""


@dataclass(frozen=True)
class Finished:
    completion: Completion
    recorded: Recorded | None
    """None when there is nothing to record (the tools row, or a failure with no outcome)."""


class Settler:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._waiting: list[tuple[Sequence[Finished], asyncio.Future[set[WorkKey]]]] = []
        self._rows_waiting = 0
        """Of ``_waiting``, counted as they come: summed at every settle, the first resync
        pass of 10,000 organizations (one visit each) spent 5% of its CPU counting."""
        self._lock = asyncio.Lock()
        self._began = -COMMIT_SPACING_SECONDS
        """When (monotonic) the last group commit began."""
        self._hurry = asyncio.Event()
        """Set when the next group commit should not wait out the spacing."""

    async def settle(self, finished: Finished, *, spaced: bool = True) -> bool:
        """Commit ``finished`` with whatever else is waiting; False if the lease was lost
        (the outcome is then not recorded: another replica owns the row)."""
        kept = await self.settle_all([finished], spaced=spaced)
        return finished.completion.claimed.key in kept

    async def settle_all(
        self, finished: Sequence[Finished], *, spaced: bool = True
    ) -> set[WorkKey]:
        """Commit all of ``finished`` (and whatever else is waiting) in one transaction;
        returns the keys whose lease still held (at least those of ``finished``).
        ``spaced=False``: the caller must not wait out ``COMMIT_SPACING_SECONDS`` (the claim
        loop: an edit may be waiting for its next claim); the group then goes at once."""
        mine: asyncio.Future[set[WorkKey]] = asyncio.get_running_loop().create_future()
        self._waiting.append((finished, mine))
        self._rows_waiting += len(finished)
        if not spaced or self._rows_waiting >= GROUP_ENOUGH:
            self._hurry.set()
        async with self._lock:
            if not mine.done():
                await self._spaced()
                await self._commit_waiting()
        return await mine

    async def flush(self) -> set[WorkKey]:
        """Commit at once whatever waits for a group commit; returns the keys whose
        completion landed. Shutdown's last step before it releases the claims still held: a
        visit cancelled while it waited out the spacing has done its Vapi writes, and its
        records and completion are in the group it left behind."""
        async with self._lock:
            waiting = [future for _, future in self._waiting]
            if not waiting:
                return set()
            kept = await self._commit_waiting()
        failed = [f.exception() for f in waiting]  # nobody else will ask: read here
        if any(failed):
            logger.warning(
                "shutdown: the outcomes of {} finished visits could not be recorded ({}); "
                "their creates' intents make the next visit adopt what they made",
                len(waiting),
                type(next(e for e in failed if e)).__name__,
            )
        return kept

    async def _spaced(self) -> None:
        """Wait out ``COMMIT_SPACING_SECONDS`` since the last group commit began, unless
        hurried (``GROUP_ENOUGH`` rows wait, or a caller that must not wait joined): those
        finishing meanwhile join this group."""
        wait = self._began + COMMIT_SPACING_SECONDS - time.monotonic()
        if wait > 0 and not self._hurry.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._hurry.wait(), wait)
        self._hurry.clear()
        self._began = time.monotonic()

    async def _commit_waiting(self) -> set[WorkKey]:
        """The keys whose completion landed (none when the commit failed)."""
        group, self._waiting = self._waiting, []
        rows = [f for finished, _ in group for f in finished]
        self._rows_waiting -= len(rows)
        try:
            kept = await self._commit(rows)
        except asyncio.CancelledError:
            self._waiting[:0] = group  # the next one in line commits the group
            self._rows_waiting += len(rows)
            raise
        except Exception as exc:  # every waiter sees the failure (Postgres down, say)
            for _, future in group:
                future.set_exception(exc)
            return set()
        for _, future in group:
            future.set_result(kept)
        return kept

    async def _commit(self, group: list[Finished]) -> set[WorkKey]:
        """The group's transaction, once more if Postgres chose it as a deadlock's victim
        (it holds the rows of many organizations until COMMIT: a platform transaction that
        edits agents of two of them in the other order can cross it)."""
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                return await self._commit_once(group)
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                if attempt == COMMIT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable: the loop returns or raises")

    async def _commit_once(self, group: list[Finished]) -> set[WorkKey]:
        shape = await engine_shape(self.engine)
        # pipelined: BEGIN and the writes' records go with the completion, the outcomes with
        # COMMIT (two round trips)
        async with direct(self.engine).connection() as conn, conn.pipeline(), conn.transaction():
            await record_writes(conn, [f.recorded for f in group if f.recorded is not None])
            kept = await queue.complete(conn, [f.completion for f in group])
            await record_outcomes(
                conn,
                [
                    f.recorded
                    for f in group
                    if f.recorded is not None and f.completion.claimed.key in kept
                ],
                shape=shape,
            )
        return kept
