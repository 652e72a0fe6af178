"""The claim loop: claim due work rows, run each through the step chain, settle it fenced.

Level-triggered: a work row says "look at this organization", never "do this". The account's
tools, when due, run alone and first (assistants link tool ids). Every task it starts is held
in ``inflight`` until it ends, so shutdown can wait for it or release its claim.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from dataclasses import dataclass
from functools import partial
from uuid import UUID

from loguru import logger

from controller.config import ControllerSettings
from controller.core.desired import DesiredState
from controller.core.keys import TOOLS, WorkKey
from controller.core.outcome import OrgOutcome, Retry
from controller.core.schedule import SchedulePolicy, next_visit
from controller.daemon.guard import SET_UP_WRONG, Guard
from controller.daemon.health import Health
from controller.daemon.metrics import Metrics
from controller.daemon.settle import Finished, Settler
from controller.reconcile.chain import OUTAGES, Chain
from controller.reconcile.lease import ClaimLease, safety_margin
from controller.reconcile.prune import WindowPruneLimit
from controller.reconcile.runtime import Runtime
from controller.reconcile.status import Recorded
from controller.secret import redact
from desired_state import queue
from desired_state.load import load_desired
from desired_state.queue import Claim, Completion, Lane
from desired_state.records import Fence

FRESH_SECONDS = 2.0
"""A claim batch's desired snapshot is used for planning while younger than this and no
change to the organization was announced since; otherwise the organization's desired state
is loaded again right before it is planned (a claimed organization may wait long for a slot
during a rollout, and a plan from a stale snapshot could delete what was just re-created)."""
CLAIM_BATCH = 1024
"""Rows claimed at once while visits find nothing to do (a resync sweep: most are answered
from their last verdict without a task, see ``_unchanged``); only ``concurrency``
organizations at a time do Vapi work. Each claim, load and group commit has a cost of its own
whatever its size: at 1024 rows instead of 256, a resync pass of 20,000 assistants cost
0.10-0.12 ms of CPU per assistant instead of 0.13. A batch of unchanged organizations takes
a few hundred milliseconds of CPU at most, which an edit claimed next may wait."""
WRITING_SECONDS = 2.0
"""A visit wrote to Vapi this recently: claim only what can start now (see ``_room``)."""
DOWN_RETRY_SECONDS = 2.0
FLUSH_SECONDS = 5.0
"""How long shutdown may spend committing what cancelled visits left for a group commit."""
GATHER_SECONDS = 0.15
GATHER_SHARE = 2
"""While visits write, a claim waits up to ``GATHER_SECONDS`` for 1/``GATHER_SHARE`` of the
slots to be free (see ``ClaimLoop._gathered``), unless a change is announced meanwhile: an
edit does not wait for it. At a cold start's 50 organizations a second a claim took 3.3
organizations with 0.05 s and a quarter of the slots, and the claims and their loads cost
0.27 ms of the daemon's CPU per Vapi write."""


class Slots:
    """A concurrency bound that can be resized while work waits on it (hot reload).

    First come, first served: a freed slot is handed to exactly one waiter. (A condition
    woken with ``notify_all`` wakes every one of a claim batch's hundreds of waiting tasks
    for each slot freed: most of a no-op pass's CPU went there.)"""

    def __init__(self, size: int) -> None:
        self.size = size
        self._used = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()

    async def __aenter__(self) -> None:
        if self._used < self.size and not self._waiting:
            self._used += 1
            return
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(handed)
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():  # handed a slot, then cancelled
                self._release()
            else:  # still queued (``_hand_over`` skips it if it gets there first)
                with contextlib.suppress(ValueError):
                    self._waiting.remove(handed)
            raise

    async def __aexit__(self, *_: object) -> None:
        self._release()

    def held(self) -> Held:
        """A slot for one piece of work, which may give it back before it ends."""
        return Held(self)

    async def resize(self, size: int) -> None:
        self.size = size
        self._hand_over()

    def _release(self) -> None:
        self._used -= 1
        self._hand_over()

    def _hand_over(self) -> None:
        while self._waiting and self._used < self.size:
            waiter = self._waiting.popleft()
            if waiter.done():  # cancelled while queued: its task has not run yet
                continue
            self._used += 1
            waiter.set_result(None)


class Held:
    """One task's slot (``Slots.held``): entered like the bound itself, and released at most
    once, at exit or earlier through ``release`` (a visit done with Vapi gives its slot to the
    next before it waits for its group commit)."""

    def __init__(self, slots: Slots) -> None:
        self._slots = slots
        self._holding = False

    async def __aenter__(self) -> Held:
        await self._slots.__aenter__()
        self._holding = True
        return self

    async def __aexit__(self, *_: object) -> None:
        self.release()

    def release(self) -> None:
        if self._holding:
            self._holding = False
            self._slots._release()


@dataclass(frozen=True)
class Snapshot:
    """A claim batch's desired state and when (monotonic) it was loaded."""

    desired: DesiredState
    loaded_at: float


@dataclass(frozen=True)
class ClaimRecorder:
    """Records an organization's outcome together with its claim's fenced completion."""

    settler: Settler
    claimed: Claim
    policy: SchedulePolicy
    settling: set[WorkKey]
    """Where the visit says it is done with Vapi and waits for its group commit: the claim
    loop's room to claim leaves it out."""
    slot: Held | None = None
    """Given back before the group commit: the Vapi work is done, and a resync's visits
    then wait for one commit together instead of ``concurrency`` at a time."""

    async def record(self, recorded: Recorded) -> bool:
        if self.slot is not None:
            self.slot.release()
        self.settling.add(self.claimed.key)
        outcome = recorded.outcome
        error = None if outcome.converged else outcome.message
        return await self.settler.settle(
            Finished(_completion(self.claimed, outcome.retry, self.policy, error), recorded)
        )


class ClaimLoop:
    def __init__(
        self,
        *,
        runtime: Runtime,
        chain: Chain,
        health: Health,
        metrics: Metrics,
        guard: Guard,
        replica_id: str,
    ) -> None:
        self.runtime = runtime
        self.chain = chain
        self.health = health
        self.metrics = metrics
        self.guard = guard
        self.replica_id = replica_id
        self.settler = Settler(runtime.engine)
        self.slots = Slots(runtime.settings.controller.concurrency)
        self.inflight: dict[WorkKey, tuple[Claim, asyncio.Task[None]]] = {}
        self.settling: set[WorkKey] = set()
        """Those of ``inflight`` done with Vapi, waiting for their group commit."""
        self.leases: dict[WorkKey, ClaimLease] = {}
        """The local view of each held claim's lease (``controller.reconcile.lease``)."""
        self.wake = asyncio.Event()
        self.due_now = False
        """Seen by the heartbeat: rows were due and unclaimed."""
        self._wrote_at = time.monotonic()
        """When (monotonic) a visit last wrote to Vapi. A replica starts as if writing (a
        cold start, or a rollout others are in): its first claims are small, so a replica
        starting beside it gets its share of the backlog instead of none."""
        self._announced: dict[UUID, float] = {}
        """Organization -> when (monotonic) a change to it was last announced (NOTIFY)."""
        self._announced_at = 0.0
        """When (monotonic) the last change was announced, to any organization."""
        self._claimed_at = 0.0
        """When (monotonic) the last claim was asked for."""
        self._schedule: tuple[ControllerSettings, SchedulePolicy] | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            self.health.turned()
            self.wake.clear()
            room = await self._gathered(stopping)
            if room:
                claimed = await self.guard.run("claim", partial(self._claim, room))
                if claimed is None:
                    await _wait(stopping, DOWN_RETRY_SECONDS)
                    continue
                self.health.claimed(got=claimed, due=self.due_now)
                if claimed == room:
                    continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.wake.wait(), self.runtime.settings.controller.idle_poll_seconds
                )

    async def drain(self, grace_seconds: float) -> list[Claim]:
        """Let in-flight work finish within the grace period; cancel the rest, commit what
        the cancelled visits left waiting for a group commit, and return the claims still
        held (the caller releases them)."""
        tasks = {task: claimed for claimed, task in self.inflight.values()}
        if not tasks:
            return []
        _, pending = await asyncio.wait(tasks, timeout=grace_seconds)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        settled: set[WorkKey] = set()
        with contextlib.suppress(TimeoutError):  # a failed commit hands back nothing
            async with asyncio.timeout(FLUSH_SECONDS):
                settled = await self.settler.flush()  # visits cancelled waiting for it
        # their ``finally`` left ``inflight``
        return [tasks[task] for task in pending if tasks[task].key not in settled]

    async def _gathered(self, stopping: asyncio.Event) -> int:
        """The room to claim, once worth a claim: while visits write, a slot freed alone
        waits up to ``GATHER_SECONDS`` for others, so one claim and one read of the desired
        state serve several organizations instead of one each."""
        room = self._room()
        floor = max(self.runtime.settings.controller.concurrency // GATHER_SHARE, 1)
        deadline = time.monotonic() + GATHER_SECONDS
        while 0 < room < floor and self.inflight and not stopping.is_set():
            if self._announced_at > self._claimed_at:  # an edit waits: claim it now
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), left)
            room = self._room()
        return 0 if stopping.is_set() else room

    def _room(self) -> int:
        """Claim again once a slot is free: a batch, less what is already held. While visits
        write to Vapi (a rollout, a cold start) only what can start now is claimed: a row
        claimed early would wait here, holding its lane's place, while an edit made since
        waits in the queue behind it."""
        concurrency = self.runtime.settings.controller.concurrency
        busy = len(self.inflight) - len(self.settling)
        if busy >= concurrency:
            return 0
        writing = time.monotonic() - self._wrote_at < WRITING_SECONDS
        batch = concurrency if writing else max(CLAIM_BATCH, concurrency)
        return batch - busy

    def changed(self, payload: str) -> None:
        """A change trigger announced an organization (the NOTIFY payload is its id)."""
        with contextlib.suppress(ValueError):
            self._announced[UUID(payload)] = self._announced_at = time.monotonic()

    def renewed(self, keys: set[WorkKey], *, asked_at: float) -> None:
        """The heartbeat extended these claims' leases with a statement sent at ``asked_at``."""
        for key in keys:
            if key in self.leases:
                self.leases[key].renewed(asked_at=asked_at)

    async def _claim(self, room: int) -> int:
        claim = partial(
            queue.claim,
            owner=self.replica_id,
            lease_seconds=self.runtime.settings.controller.lease_seconds,
        )
        asked_at = self._claimed_at = time.monotonic()
        async with self.runtime.engine.begin() as conn:
            tools = await claim(conn, limit=1, tools=True)
            # the common case: organizations, in the same transaction
            claims = [] if tools else await claim(conn, limit=room)
        self.health.recovered()
        for claimed in tools:  # alone and first: assistants link tool ids
            self._hold(claimed, asked_at)
            visit = asyncio.create_task(
                self._work(claimed, Snapshot(DesiredState(), time.monotonic()))
            )
            self.inflight[claimed.key] = (claimed, visit)  # held: the heartbeat renews it
            await visit
        if tools:
            asked_at = time.monotonic()
            async with self.runtime.engine.begin() as conn:
                claims = await claim(conn, limit=room)
        if claims:
            orgs = [c.key for c in claims if c.key is not TOOLS]
            began = time.monotonic()  # before the read: a change announced later is newer
            async with self.runtime.engine.connect() as conn:
                desired = Snapshot(await load_desired(conn, org_ids=orgs), began)
            unchanged: list[tuple[Claim, Recorded]] = []
            for claimed in claims:
                recorded = self._unchanged(claimed, desired)
                if recorded is not None:
                    unchanged.append((claimed, recorded))
                    continue
                self._hold(claimed, asked_at)
                task = asyncio.create_task(self._work(claimed, desired))
                self.inflight[claimed.key] = (claimed, task)
                task.add_done_callback(lambda _: self.wake.set())
            if unchanged:
                await self._settle_unchanged(unchanged, since=began)
        self.metrics.inflight.set(len(self.inflight))
        return len(tools) + len(claims)

    def _unchanged(self, claimed: Claim, snapshot: Snapshot) -> Recorded | None:
        """The record of a visit that needs no step of the chain: nothing the organization's
        plan is made from changed since its last visit found nothing to do, and no change
        to it was announced since the batch was loaded (``Chain.unchanged``)."""
        org_id = claimed.key
        if org_id is TOOLS or self._announced.get(org_id, 0.0) > snapshot.loaded_at:
            return None
        return self.chain.unchanged(org_id, snapshot.desired)

    async def _settle_unchanged(
        self, unchanged: list[tuple[Claim, Recorded]], *, since: float
    ) -> None:
        """Their completions and status rows in one group commit, counted as visits."""
        policy = self._policy()
        kept = await self.settler.settle_all(
            [
                Finished(_completion(claimed, recorded.outcome.retry, policy, None), recorded)
                for claimed, recorded in unchanged
            ],
            spaced=False,  # the claim loop waits for it
        )
        took = time.monotonic() - since
        for claimed, recorded in unchanged:
            self._count_lost(claimed, claimed.key in kept)
            self.metrics.reconciles.labels(recorded.outcome.state).inc()
            self.metrics.reconcile_seconds.observe(took)
        logger.debug(
            "{} organizations unchanged since their last visit: nothing to do", len(unchanged)
        )

    def _hold(self, claimed: Claim, asked_at: float) -> None:
        seconds = self.runtime.settings.controller.lease_seconds
        self.leases[claimed.key] = ClaimLease.asked(
            at=asked_at, seconds=seconds, margin=safety_margin(seconds)
        )

    async def _work(self, claimed: Claim, desired: Snapshot) -> None:
        started = time.monotonic()
        reconcile_id = f"{random.getrandbits(48):012x}"  # a log correlation id: uuid4 cost more
        result = "error"
        try:
            async with self.slots.held() as slot:
                self.health.started(claimed)
                try:
                    result = await self._reconcile(claimed, desired, reconcile_id, slot)
                except (*OUTAGES, *SET_UP_WRONG) as exc:
                    self.health.failure(exc)
                    await self.guard.run("settle", partial(self._fail, claimed, exc))
        except Exception as exc:  # the chain's edge caught the organization's own errors
            self.metrics.internal_errors.labels("work").inc()
            logger.opt(exception=exc).bind(org_id=str(claimed.key)).error(
                "internal error settling a claim: {}", type(exc).__name__
            )
        finally:
            self._ended(claimed, started)
            self.metrics.reconciles.labels(result).inc()
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    def _ended(self, claimed: Claim, started: float) -> None:
        """A visit begun at ``started`` (monotonic) is over: its claim is no longer held
        here. A change announced during it made its row due again, interactive: the next
        claim does not wait to gather free slots."""
        key = claimed.key
        if isinstance(key, UUID) and self._announced.get(key, 0.0) > started:
            self._announced_at = time.monotonic()
        self.health.finished(claimed)
        self.settling.discard(key)
        self.inflight.pop(key, None)
        self.leases.pop(key, None)
        self.metrics.inflight.set(len(self.inflight))

    async def _reconcile(
        self, claimed: Claim, snapshot: Snapshot, reconcile_id: str, slot: Held
    ) -> str:
        """One work row through the chain; returns the result label for metrics."""
        limit = WindowPruneLimit(
            self.runtime.engine,
            self.chain.cache.state,
            self.runtime.settings.prune_bounds,
            self.runtime.settings.controller.resync_interval_seconds,
        )
        if claimed.key is TOOLS:
            tools = await self.chain.reconcile_tools(
                await self._tools_desired(),
                reconcile_id=reconcile_id,
                limit=limit,
                lease=self.leases[claimed.key],
            )
            error = "; ".join(tools.errors) or None
            retry: Retry = "backoff" if error else "resync"
            completion = _completion(claimed, retry, self._policy(), error)
            kept = await self.settler.settle(Finished(completion, None), spaced=False)
            if tools.relink:
                await self._mark_every_org_due()
            self._count_lost(claimed, kept)
            return "failed" if error else "synced"
        recorder = ClaimRecorder(self.settler, claimed, self._policy(), self.settling, slot)
        outcome = await self.chain.reconcile_org(
            claimed.key,
            await self._fresh(claimed.key, snapshot),
            reconcile_id=reconcile_id,
            limit=limit,
            recorder=recorder,
            lease=self.leases[claimed.key],
            fence=Fence(claimed.key, claimed.token),
        )
        self._observe(outcome)
        return outcome.state

    def _observe(self, outcome: OrgOutcome) -> None:
        self.health.outcome(outcome)
        self.metrics.writes.inc(outcome.writes)
        if outcome.writes:
            self._wrote_at = time.monotonic()
        if outcome.reason == "internal_error":
            self.metrics.internal_errors.labels("reconcile").inc()

    async def _fail(self, claimed: Claim, exc: Exception) -> None:
        """An outage during the reconcile: the claim completes with backoff, nothing else."""
        error = redact(f"{type(exc).__name__}: {exc}")[:2000]
        kept = await self.settler.settle(
            Finished(_completion(claimed, "backoff", self._policy(), error), None)
        )
        self._count_lost(claimed, kept)

    def _count_lost(self, claimed: Claim, kept: bool) -> None:
        if not kept:
            self.metrics.leases_lost.inc()
            logger.bind(org_id=str(claimed.key)).warning(
                "lease lost to another replica: this outcome is not recorded"
            )

    async def _fresh(self, org_id: UUID, snapshot: Snapshot) -> DesiredState:
        """The batch's snapshot while fresh, else this organization's, loaded now."""
        loaded_at = snapshot.loaded_at
        stale = time.monotonic() - loaded_at > FRESH_SECONDS
        if not stale and self._announced.get(org_id, 0.0) <= loaded_at:
            return snapshot.desired
        self._announced.pop(org_id, None)
        async with self.runtime.engine.connect() as conn:
            return await load_desired(conn, org_ids=[org_id])

    async def _tools_desired(self) -> DesiredState:
        async with self.runtime.engine.connect() as conn:
            return await load_desired(conn, org_ids=())

    async def _mark_every_org_due(self) -> None:
        async with self.runtime.engine.begin() as conn:
            await queue.mark_due(conn, None, lane=Lane.BULK)

    def _policy(self) -> SchedulePolicy:
        """The schedule of the settings in force, made again only when they are swapped (a
        resync asks for it once per organization)."""
        c = self.runtime.settings.controller
        if self._schedule is None or self._schedule[0] is not c:
            policy = SchedulePolicy(
                c.resync_interval_seconds,
                c.resync_jitter,
                c.backoff_base_seconds,
                c.backoff_max_seconds,
            )
            self._schedule = (c, policy)
        return self._schedule[1]


def _completion(
    claimed: Claim, retry: Retry, policy: SchedulePolicy, error: str | None
) -> Completion:
    visit = next_visit(retry, attempts=claimed.attempts, policy=policy, draw=random.random())
    return Completion(claimed, visit.due_in, visit.attempts, error)


async def _wait(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
