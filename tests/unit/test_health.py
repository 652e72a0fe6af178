"""Liveness comes from progress (a fake clock, no sleeping); the health server's address is
bound up front, so a port in use is a one-line set-up error."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from controller.daemon.health import Health
from controller.daemon.http import health_server
from controller.preflight import ListenError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class NoAlerts:
    def condition(self, *_: Any, **__: Any) -> None:
        return None


def health(clock: Clock) -> Health:
    found = Health(NoAlerts(), "r1", stall_seconds=60, clock=clock)  # type: ignore[arg-type]
    found.db_ok = True
    return found


def test_a_loop_that_turns_and_claims_when_work_is_due_is_alive() -> None:
    clock = Clock()
    h = health(clock)
    for _ in range(10):
        clock.now += 30
        h.turned()
        h.claimed(got=5, due=True)
    assert h.liveness() == (True, "alive")


def test_a_loop_that_stopped_turning_is_not_alive() -> None:
    clock = Clock()
    h = health(clock)
    clock.now += 61
    ok, why = h.liveness()
    assert not ok
    assert "has not turned" in why


def test_a_loop_that_turns_but_claims_nothing_while_work_is_due_is_not_alive() -> None:
    clock = Clock()
    h = health(clock)
    for _ in range(4):
        clock.now += 30
        h.turned()
        h.claimed(got=0, due=True)
    ok, why = h.liveness()
    assert not ok
    assert "nothing was claimed" in why
    h.claimed(got=0, due=False)
    assert h.liveness()[0], "nothing due: idling is progress"


def test_a_reconcile_running_past_the_stall_time_is_not_alive() -> None:
    clock = Clock()
    h = health(clock)
    h.started("org-1")
    clock.now += 61
    h.turned()
    ok, why = h.liveness()
    assert not ok
    assert "running for 61s" in why
    h.finished("org-1")
    assert h.liveness()[0]


def test_readiness_names_a_schema_that_is_not_migrated_first() -> None:
    h = health(Clock())
    h.vapi_ok = True
    h.schema_problem = "run `vapi-reconciler migrate`"
    assert h.readiness() == (False, "run `vapi-reconciler migrate`")


def test_a_port_in_use_is_refused_with_one_line() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        with pytest.raises(ListenError, match=f"127.0.0.1:{port}: Address already in use"):
            health_server(None, ("127.0.0.1", port))  # type: ignore[arg-type]
    finally:
        holder.close()
