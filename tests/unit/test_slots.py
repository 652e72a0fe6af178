"""The claim loop's concurrency bound: first come, first served, resizable, cancel-safe."""

from __future__ import annotations

import asyncio

from controller.daemon.claims import Slots


async def a_slot_is_free(slots: Slots) -> bool:
    """A newcomer gets in at once (a slot was not lost)."""

    async def enter() -> bool:
        async with slots:
            return True

    return await asyncio.wait_for(enter(), 1)


async def test_freed_slots_go_to_waiters_in_arrival_order_never_above_the_size() -> None:
    slots = Slots(2)
    started: list[int] = []
    peak = 0
    running = 0
    gate = asyncio.Event()

    async def work(n: int) -> None:
        nonlocal peak, running
        async with slots:
            started.append(n)
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1

    tasks = [asyncio.create_task(work(n)) for n in range(6)]
    await asyncio.sleep(0.01)
    assert started == [0, 1]
    gate.set()
    await asyncio.gather(*tasks)
    assert started == list(range(6))
    assert peak == 2


async def test_growing_the_size_lets_waiters_in_at_once() -> None:
    slots = Slots(1)
    inside = 0
    gate = asyncio.Event()

    async def work() -> None:
        nonlocal inside
        async with slots:
            inside += 1
            await gate.wait()

    tasks = [asyncio.create_task(work()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert inside == 1
    await slots.resize(3)
    await asyncio.sleep(0.01)
    assert inside == 3
    gate.set()
    await asyncio.gather(*tasks)


async def test_a_cancelled_waiter_neither_takes_nor_loses_a_slot() -> None:
    slots = Slots(1)
    gate = asyncio.Event()

    async def hold() -> None:
        async with slots:
            await gate.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0.01)
    waiter.cancel()
    gate.set()
    await holder
    await asyncio.gather(waiter, return_exceptions=True)

    assert await a_slot_is_free(slots)


async def test_a_waiter_cancelled_just_after_it_was_handed_a_slot_gives_it_back() -> None:
    slots = Slots(1)
    async with slots:
        waiter = asyncio.create_task(slots.__aenter__())
        await asyncio.sleep(0.01)
    # the slot was handed to the waiter; it is cancelled before it runs
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)

    assert await a_slot_is_free(slots)


async def test_a_waiter_cancelled_in_the_tick_its_slot_frees_is_skipped_not_handed_it() -> None:
    """``drain`` cancels queued tasks while holders finish: the freed slot must not go to a
    cancelled waiter (an error in the holder, a slot lost for good)."""
    slots = Slots(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with slots:
            await release.wait()

    async def waiter() -> None:
        async with slots:
            await asyncio.sleep(10)

    held = asyncio.create_task(holder())
    await asyncio.sleep(0)
    queued = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    release.set()
    queued.cancel()
    results = await asyncio.gather(held, queued, return_exceptions=True)

    assert results[0] is None
    assert isinstance(results[1], asyncio.CancelledError)
    assert await a_slot_is_free(slots)
