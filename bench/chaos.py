"""The fault campaign: replicas of the real daemon under a seeded schedule of faults and a
workload of platform changes, then convergence and the end checks.

    python -m bench.run chaos --seed 1 --minutes 4 --orgs 40 --replicas 3 [--prune]

Why: each invariant (no duplicates, no cross-organization write, no lost change, nothing
dies) has its own tests; only a campaign shows them holding while faults overlap: a replica
frozen past its lease while another takes its organizations over, Postgres connections cut
mid-claim, Vapi answering 5xx and 429s or cutting connections after committing, the
dashboard editing and deleting behind the controller's back, platform rows changing all the
while. Prints a summary, writes ``bench/results/chaos-seed<S>-....json``, exits 1 when an end
check fails. ``docs/chaos.md`` describes every fault and check.

What it must not do: touch anything but what it made (a scratch database, the simulator on a
loopback port, the replicas it started: only those are signalled, by their own pid);
judge the controller by the controller's own view (the end checks read Postgres as the
platform does and Vapi through the simulator's dashboard, and render each desired body with
``controller.core.render`` themselves; ``plan`` is one check among others); assert on wall
times (convergence is reported; only its timeout fails the run).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Connection, text

from bench.run import KEY, RESULTS, Bench, bench
from controller.config import load_settings
from controller.core.desired import DesiredAgent
from controller.core.drift import diff
from controller.core.observed import MANAGED_BY, ObservedTool
from controller.core.render import InvalidAgentError, render_assistant
from controller.core.settings import RenderDefaults
from desired_state.sample import VOICES, sample_prompt

ROOT = Path(__file__).resolve().parents[1]
BACKEND = "https://backend.chaos.example"
APP_NAME = "vapi-chaos-r"
"""``application_name`` of replica N's connections (libpq reads ``PGAPPNAME``)."""
LEASE = 6.0
TICK = 0.05
EXAMPLES = 20
"""Examples kept per check in the JSON (the summary prints two)."""
CONFIG = """\
[vapi]
rate_limit_per_second = 60
burst = 20
poll_interval_seconds = 2
relist_interval_seconds = {relist}
timeout_seconds = 5
[controller]
prune = {prune}
max_prune_per_pass = 200
max_prune_fraction = 0.5
concurrency = 8
resync_interval_seconds = {resync}
resync_jitter = 0.1
backoff_base_seconds = 0.5
backoff_max_seconds = 10
lease_seconds = {lease}
shutdown_grace_seconds = 5
reload_interval_seconds = 1
stall_seconds = 60
[server]
listen = "127.0.0.1:{port}"
"""
FAULTS_PER_MINUTE = {
    "kill9": 1.0,
    "sigstop_short": 2.0,
    "sigstop_past_lease": 1.0,
    "sigstop_after_claim": 1.5,
    "pg_terminate": 1.5,
    "vapi_5xx": 1.0,
    "vapi_latency": 1.0,
    "vapi_429": 1.0,
    "vapi_drop": 1.0,
    "dashboard_edit": 4.0,
    "dashboard_delete": 1.5,
    "dashboard_tool_edit": 0.5,
    "dashboard_tool_delete": 0.5,
    "hostile_object": 1.0,
}
"""Each kind happens at least once, whatever ``--minutes``."""
CHANGES = {
    "prompt": 25,
    "voice": 10,
    "first_message": 8,
    "first_message_null": 7,
    "insert_org": 8,
    "insert_agent": 5,
    "delete_agent": 5,
    "delete_org": 2,
    "suspend": 5,
    "reactivate": 5,
    "toggle_active": 10,
}
"""Relative weights of the platform's changes."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- replicas ----------------------------------------------------------------------------


@dataclass
class Replica:
    """Replica N of the fleet; each (re)start is a new incarnation with its own replica id
    and log file (as a Deployment's pods would be)."""

    index: int
    config: Path
    port: int
    incarnation: int = 0
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = None
    stopped: bool = False
    killed: bool = False
    logs: list[Path] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"r{self.index}.{self.incarnation}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def running(self) -> bool:
        return self.alive and not self.stopped


class Fleet:
    """The replicas: started with the worktree's code, signalled only through their pids."""

    def __init__(self, b: Bench, count: int, logdir: Path, config: str) -> None:
        self.b = b
        self.logdir = logdir
        self.died: list[dict[str, Any]] = []
        """Exits the campaign did not cause."""
        self.replicas = []
        for index in range(1, count + 1):
            port = free_port()
            path = b.workdir / f"r{index}.toml"
            path.write_text(config.format(port=port))
            self.replicas.append(Replica(index, path, port))

    def env(self, index: int) -> dict[str, str]:
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        return {
            **{k: v for k, v in os.environ.items() if not k.startswith("VAPI_")},
            "DATABASE_URL": self.b.url,
            "VAPI_BASE_URL": self.b.sim,
            "VAPI_PRIVATE_KEY": KEY,
            "BACKEND_URL": BACKEND,
            "PGAPPNAME": f"{APP_NAME}{index}",
            "PYTHONPATH": path,
        }

    def start(self, r: Replica) -> None:
        r.incarnation += 1
        r.stopped = r.killed = False
        if r.log is not None:
            r.log.close()
        path = self.logdir / f"{r.name}.log"
        r.logs.append(path)
        r.log = path.open("wb")
        r.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "--log-level",
                "INFO",
                "--log-json",
                "run",
                "--config",
                str(r.config),
                "--replica-id",
                r.name,
            ],
            env=self.env(r.index),
            cwd=ROOT,
            stdout=r.log,
            stderr=subprocess.STDOUT,
        )

    def signal(self, r: Replica, sig: signal.Signals) -> None:
        if r.process is not None and r.alive:
            r.process.send_signal(sig)

    def watch(self) -> None:
        """Record (and restart) any replica that exited without the campaign killing it."""
        for r in self.replicas:
            if r.process is not None and not r.killed and not r.alive:
                self.died.append(
                    {"replica": r.name, "exit_code": r.process.returncode, "log": r.logs[-1].name}
                )
                self.start(r)

    def by_name(self, name: str) -> Replica | None:
        return next((r for r in self.replicas if r.name == name and r.alive), None)

    def healthy(self, r: Replica) -> int:
        try:
            return httpx.get(f"http://127.0.0.1:{r.port}/healthz", timeout=2).status_code
        except httpx.HTTPError:
            return 0

    def stop_all(self) -> dict[str, int | None]:
        """SIGTERM each live replica; their exit codes (0 is a clean stop)."""
        codes: dict[str, int | None] = {}
        for r in self.replicas:
            if r.process is None:
                continue
            if r.stopped:
                self.signal(r, signal.SIGCONT)
            if r.alive:
                r.process.terminate()
                try:
                    codes[r.name] = r.process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    r.process.kill()
                    codes[r.name] = r.process.wait(timeout=10)
            if r.log is not None:
                r.log.close()
                r.log = None
        return codes


# -- the schedule --------------------------------------------------------------------------


@dataclass(order=True)
class Event:
    at: float
    seq: int
    kind: str = field(compare=False)
    action: Callable[[], None] = field(compare=False)


class Campaign:
    def __init__(self, b: Bench, fleet: Fleet, args: argparse.Namespace) -> None:
        self.b = b
        self.fleet = fleet
        self.args = args
        self.rng = random.Random(args.seed)
        self.events: list[Event] = []
        self.seq = itertools.count()
        self.start = time.time()
        self.faults: Counter[str] = Counter()
        self.changes: Counter[str] = Counter()
        self.timeline: list[dict[str, Any]] = []
        self.windows: dict[int, dict[str, Any]] = {}
        self.hostile: dict[str, dict[str, Any]] = {}
        """Objects made in the dashboard that the controller must never touch."""
        self.deleted: list[tuple[float, str, str]] = []
        """Dashboard deletions: (time, resource, id)."""
        self.watching: dict[str, float] = {}
        """Organizations inserted for a targeted SIGSTOP: id -> watch deadline."""
        self.org_number = args.orgs

    # -- schedule --------------------------------------------------------------------------
    def at(self, when: float, kind: str, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, Event(when, next(self.seq), kind, action))

    def plan(self, seconds: float) -> None:
        """The seeded schedule: fault times per kind, platform changes at an even rate."""
        for kind, per_minute in FAULTS_PER_MINUTE.items():
            for _ in range(max(1, round(per_minute * seconds / 60))):
                moment = self.start + self.rng.uniform(0.05, 0.9) * seconds
                self.at(moment, kind, getattr(self, f"fault_{kind}"))
        changes = max(1, round(self.args.changes_per_minute * seconds / 60))
        for n in range(changes):
            self.at(self.start + (n + 0.5) * seconds / changes, "change", self.change)

    def run(self, seconds: float) -> None:
        end = self.start + seconds
        while time.time() < end:
            while self.events and self.events[0].at <= time.time():
                event = heapq.heappop(self.events)
                event.action()
            self.watch_claims()
            self.fleet.watch()
            time.sleep(TICK)
        self.events.clear()

    def note(self, kind: str, **detail: Any) -> None:
        now = time.time()
        self.timeline.append(
            {"t": round(now - self.start, 2), "clock": _clock(now), "kind": kind, **detail}
        )

    def recent(self, moment: float, seconds: float = 20.0) -> list[dict[str, Any]]:
        """What the campaign did in the ``seconds`` before ``moment`` (wall clock)."""
        since = moment - self.start
        return [e for e in self.timeline if since - seconds <= e["t"] <= since]

    def fault(self, kind: str, **detail: Any) -> None:
        self.faults[kind] += 1
        self.note(kind, **detail)

    def pick(self, replicas: list[Replica]) -> Replica | None:
        return self.rng.choice(replicas) if replicas else None

    def running(self) -> list[Replica]:
        return [r for r in self.fleet.replicas if r.running]

    # -- process faults --------------------------------------------------------------------
    def fault_kill9(self) -> None:
        r = self.pick([r for r in self.fleet.replicas if r.alive])
        if r is None:
            return
        self.fleet.signal(r, signal.SIGKILL)
        r.killed = True
        assert r.process is not None
        r.process.wait(timeout=10)
        delay = self.rng.uniform(0.5, 5.0)
        self.fault("kill9", replica=r.name, restart_after_s=round(delay, 1))
        self.at(time.time() + delay, "restart", lambda: self._restart(r))

    def _restart(self, r: Replica) -> None:
        if r.killed:
            self.fleet.start(r)
            self.note("restart", replica=r.name)

    def _sigstop(self, kind: str, r: Replica, seconds: float, **detail: Any) -> None:
        self.fleet.signal(r, signal.SIGSTOP)
        r.stopped = True
        self.fault(kind, replica=r.name, seconds=round(seconds, 1), **detail)
        incarnation = r.incarnation
        self.at(time.time() + seconds, "sigcont", lambda: self._sigcont(r, incarnation))

    def _sigcont(self, r: Replica, incarnation: int) -> None:
        if r.incarnation == incarnation and r.stopped:
            self.fleet.signal(r, signal.SIGCONT)
            r.stopped = False
            self.note("sigcont", replica=r.name)

    def fault_sigstop_short(self) -> None:
        r = self.pick(self.running())
        if r is not None:
            self._sigstop("sigstop_short", r, self.rng.uniform(0.3, 0.6) * LEASE)

    def fault_sigstop_past_lease(self) -> None:
        r = self.pick(self.running())
        if r is not None:
            self._sigstop("sigstop_past_lease", r, self.rng.uniform(1.3, 3.0) * LEASE)

    def fault_sigstop_after_claim(self) -> None:
        """A new organization is inserted; whichever replica claims it is frozen at once,
        past its lease, in the middle of creating its assistants."""
        org = self.insert_org()
        self.watching[org] = time.time() + 15

    def watch_claims(self) -> None:
        if not self.watching:
            return
        with self.b.engine.connect() as conn:
            held = conn.execute(
                text(
                    "select org_id::text, lease_owner from reconciler.work_items "
                    "where lease_owner is not null and org_id = any(cast(:ids as uuid[]))"
                ),
                {"ids": list(self.watching)},
            ).all()
        for org, owner in held:
            self.watching.pop(org, None)
            r = self.fleet.by_name(owner)
            if r is not None and not r.stopped:
                seconds = self.rng.uniform(1.5, 3.0) * LEASE
                self._sigstop("sigstop_after_claim", r, seconds, org_id=org)
        now = time.time()
        for org, deadline in list(self.watching.items()):
            if deadline < now:
                self.watching.pop(org)
                self.note("claim_not_seen", org_id=org)

    def fault_pg_terminate(self) -> None:
        r = self.pick([r for r in self.fleet.replicas if r.alive])
        one = r is not None and self.rng.random() < 0.6
        pattern = f"{APP_NAME}{r.index}" if one and r is not None else f"{APP_NAME}%"
        with self.b.engine.begin() as conn:
            cut = conn.execute(
                text(
                    "select count(pg_terminate_backend(pid)) from pg_stat_activity "
                    "where datname = current_database() and application_name like :app"
                ),
                {"app": pattern},
            ).scalar_one()
        self.fault("pg_terminate", target=pattern, connections=int(cut))

    # -- Vapi faults -----------------------------------------------------------------------
    def _window(self, kind: str, values: dict[str, Any]) -> None:
        key = next(self.seq)
        seconds = self.rng.uniform(5.0, 20.0)
        self.windows[key] = values
        self._apply_windows()
        self.fault(kind, seconds=round(seconds, 1), **values)
        self.at(time.time() + seconds, "window_end", lambda: self._close(key))

    def _close(self, key: int) -> None:
        self.windows.pop(key, None)
        self._apply_windows()

    def _apply_windows(self) -> None:
        """Overlapping windows compose: the worst error rate, latencies added, the lowest
        rate limit."""
        values = self.windows.values()
        rates = [v["rate_limit_per_second"] for v in values if "rate_limit_per_second" in v]
        self.b.faults(
            error_rate=max((v.get("error_rate", 0.0) for v in values), default=0.0),
            latency_seconds=sum(v.get("latency_seconds", 0.0) for v in values),
            rate_limit_per_second=min(rates) if rates else None,
            rate_limit_burst=3 if rates else 10,
        )

    def fault_vapi_5xx(self) -> None:
        self._window("vapi_5xx", {"error_rate": round(self.rng.uniform(0.05, 0.2), 3)})

    def fault_vapi_latency(self) -> None:
        self._window("vapi_latency", {"latency_seconds": round(self.rng.uniform(0.1, 0.8), 2)})

    def fault_vapi_429(self) -> None:
        self._window("vapi_429", {"rate_limit_per_second": round(self.rng.uniform(3, 10), 1)})

    def fault_vapi_drop(self) -> None:
        """Writes committed by Vapi whose answer never arrives (the connection is cut)."""
        method, route = self.rng.choice([("POST", "/assistant"), ("PATCH", "/assistant/{id}")])
        count = self.rng.randint(1, 3)
        self.b.faults(scripted=[{"kind": "drop", "method": method, "route": route, "count": count}])
        self.fault("vapi_drop", method=method, count=count)

    # -- the dashboard ---------------------------------------------------------------------
    def dashboard(self, method: str, path: str, body: Any = None) -> Any:
        answer = httpx.request(method, f"{self.b.sim}/_sim/objects/{path}", json=body, timeout=30)
        return answer.json() if answer.status_code < 300 else None

    def _managed(self) -> list[dict[str, Any]]:
        return [a for a in self.dashboard("GET", "assistant") if _tags(a).get("managed_by")]

    def _our_tools(self) -> list[dict[str, Any]]:
        return [t for t in self.dashboard("GET", "tool") if ObservedTool(t).is_ours(BACKEND)]

    def fault_dashboard_edit(self) -> None:
        managed = self._managed()
        if not managed:
            return
        target = self.rng.choice(sorted(managed, key=lambda a: str(a["id"])))
        raw = target.get("model")
        model: dict[str, Any] = raw if isinstance(raw, dict) else {}
        edits: list[dict[str, Any]] = [
            {"firstMessage": "Edited in the dashboard"},
            {"name": "Renamed in the dashboard"},
            {"voice": {"provider": "vapi", "voiceId": "Harry"}},
            {"maxDurationSeconds": 1234},
            {"model": {**model, "messages": [{"role": "system", "content": "Dashboard prompt"}]}},
            {"model": {**model, "toolIds": []}},
            {"model": "gpt-4o"},  # hostile: a string where an object belongs
        ]
        changes = self.rng.choice(edits)
        self.dashboard("PATCH", f"assistant/{target['id']}", changes)
        self.fault("dashboard_edit", vapi_id=target["id"], fields=sorted(changes))

    def fault_dashboard_delete(self) -> None:
        managed = self._managed()
        if managed:
            target = self.rng.choice(sorted(managed, key=lambda a: str(a["id"])))
            self.dashboard("DELETE", f"assistant/{target['id']}")
            self.deleted.append((time.time(), "assistant", str(target["id"])))
            self.fault("dashboard_delete", vapi_id=target["id"], agent_id=_tags(target)["agent_id"])

    def fault_dashboard_tool_edit(self) -> None:
        tools = self._our_tools()
        if tools:
            target = self.rng.choice(sorted(tools, key=lambda t: str(t["id"])))
            function = {**target["function"], "description": "Edited in the dashboard"}
            self.dashboard("PATCH", f"tool/{target['id']}", {"function": function})
            self.fault("dashboard_tool_edit", vapi_id=target["id"])

    def fault_dashboard_tool_delete(self) -> None:
        tools = self._our_tools()
        if tools:
            target = self.rng.choice(sorted(tools, key=lambda t: str(t["id"])))
            self.dashboard("DELETE", f"tool/{target['id']}")
            self.deleted.append((time.time(), "tool", str(target["id"])))
            self.fault("dashboard_tool_delete", vapi_id=target["id"])

    def fault_hostile_object(self) -> None:
        """Objects no controller made, in shapes the API would refuse."""
        shapes: list[tuple[str, dict[str, Any]]] = [
            ("assistant", {"name": "Hostile list metadata", "metadata": ["managed_by"]}),
            ("assistant", {"name": "Hostile string model", "model": "gpt-4o"}),
            ("assistant", {"name": "Hostile string voice", "voice": "Paige", "metadata": 7}),
            ("tool", {"type": "function", "function": "bookClinicAppointment"}),
        ]
        resource, body = self.rng.choice(shapes)
        made = self.dashboard("POST", resource, body)
        self.hostile[str(made["id"])] = {"resource": resource, **body}
        self.fault("hostile_object", resource=resource, vapi_id=made["id"])

    # -- the platform's changes ------------------------------------------------------------
    def change(self) -> None:
        kind = self.rng.choices(list(CHANGES), weights=list(CHANGES.values()))[0]
        try:
            with self.b.engine.begin() as conn:
                conn.execute(text("set local lock_timeout = '2s'"))
                done = self._change(conn, kind)
        except Exception as exc:  # a row locked by a frozen replica: the platform waits too
            self.changes["blocked_by_a_lock"] += 1
            self.note("change_failed", change=kind, error=type(exc).__name__)
            return
        self.changes[done] += 1

    def _agent(self, conn: Connection, where: str = "true") -> Any:
        rows = conn.execute(text(f"select id, org_id, role from agents where {where} order by id"))
        found = rows.all()
        return self.rng.choice(found) if found else None

    def _org(self, conn: Connection, status: str) -> Any:
        rows = conn.execute(
            text("select id from organizations where status = :s order by id"), {"s": status}
        ).all()
        return self.rng.choice(rows)[0] if rows else None

    def _change(self, conn: Connection, kind: str) -> str:
        agent = self._agent(conn)
        if kind == "insert_org" or agent is None:
            self._insert_org(conn)
            return "insert_org"
        n = next(self.seq)
        if kind == "prompt":
            prompt = f"{sample_prompt('the clinic', agent.role)} Revision {n}."
            self._update(conn, agent.id, system_prompt=prompt)
        elif kind == "voice":
            provider, voice = self.rng.choice(VOICES)
            self._update(conn, agent.id, voice_provider=provider, voice=voice)
        elif kind == "first_message":
            self._update(conn, agent.id, first_message=f"Hello, revision {n}, how can I help?")
        elif kind == "first_message_null":
            self._update(conn, agent.id, first_message=None)
        elif kind == "toggle_active":
            conn.execute(
                text("update agents set active = not active where id = :id"), {"id": agent.id}
            )
        elif kind == "delete_agent":
            conn.execute(text("delete from agents where id = :id"), {"id": agent.id})
        elif kind == "delete_org":
            conn.execute(text("delete from organizations where id = :id"), {"id": agent.org_id})
        elif kind == "insert_agent":
            return self._insert_agent(conn) or self._change(conn, "insert_org")
        elif kind in ("suspend", "reactivate"):
            org = self._org(conn, "active" if kind == "suspend" else "suspended")
            if org is None:
                return self._change(conn, "prompt")
            status = "suspended" if kind == "suspend" else "active"
            conn.execute(
                text("update organizations set status = :s, updated_at = now() where id = :id"),
                {"s": status, "id": org},
            )
        return kind

    def _update(self, conn: Connection, agent_id: Any, **values: Any) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        conn.execute(
            text(f"update agents set {sets}, updated_at = now() where id = :id"),
            {**values, "id": agent_id},
        )

    def insert_org(self) -> str:
        with self.b.engine.begin() as conn:
            org = self._insert_org(conn)
        self.changes["insert_org"] += 1
        return org

    def _insert_org(self, conn: Connection) -> str:
        org = str(uuid.uuid4())
        name = f"Chaos clinic {self.org_number:05d}"
        self.org_number += 1
        conn.execute(
            text("insert into organizations (id, name, status) values (:id, :name, 'active')"),
            {"id": org, "name": name},
        )
        for role in ("inbound", "outbound"):
            self._insert_agent_row(conn, org, name, role)
        return org

    def _insert_agent(self, conn: Connection) -> str | None:
        """An agent for a role an organization lacks (after a delete)."""
        missing = conn.execute(
            text(
                "select o.id, o.name, r.role from organizations o "
                "cross join (values ('inbound'), ('outbound')) as r(role) "
                "where not exists (select 1 from agents a where a.org_id = o.id "
                "and a.role = r.role) order by o.id, r.role"
            )
        ).all()
        if not missing:
            return None
        org, name, role = self.rng.choice(missing)
        self._insert_agent_row(conn, str(org), name, role)
        return "insert_agent"

    def _insert_agent_row(self, conn: Connection, org: str, name: str, role: str) -> None:
        provider, voice = self.rng.choice(VOICES)
        conn.execute(
            text(
                "insert into agents (org_id, role, name, system_prompt, first_message, voice, "
                "voice_provider, model, temperature, max_tokens) values (:org, :role, :name, "
                ":prompt, :first, :voice, :provider, 'gpt-4o', 0.3, 300)"
            ),
            {
                "org": org,
                "role": role,
                "name": f"{name} {role}"[:40],
                "prompt": sample_prompt(name, role),
                "first": self.rng.choice([f"Hello, {name}, how can I help?", None]),
                "voice": voice,
                "provider": provider,
            },
        )

    # -- the end ---------------------------------------------------------------------------
    def calm(self) -> None:
        """Faults and workload stop: every replica alive and running, Vapi well again."""
        self.events.clear()
        self.watching.clear()
        for r in self.fleet.replicas:
            if r.stopped:
                self.fleet.signal(r, signal.SIGCONT)
                r.stopped = False
            if not r.alive:
                self.fleet.start(r)
        self.windows.clear()
        self.b.faults(
            error_rate=0.0,
            latency_seconds=0.0,
            rate_limit_per_second=None,
            rate_limit_burst=10,
            scripted=[],
        )
        self.note("calm")


def _clock(moment: float) -> str:
    """A wall-clock time as the replicas' logs print it (local time, milliseconds)."""
    return time.strftime("%H:%M:%S", time.localtime(moment)) + f"{moment % 1:.3f}"[1:]


def _tags(body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body.get("metadata")
    return dict(meta) if isinstance(meta, Mapping) and meta.get("managed_by") == MANAGED_BY else {}


# -- the end checks ------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    violations: int
    examples: list[Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.violations == 0

    def fail(self, example: Any) -> None:
        self.violations += 1
        if len(self.examples) < 50:
            self.examples.append(example)


@dataclass
class Snapshot:
    """The platform's rows and Vapi's objects, read as an outsider."""

    agents: list[dict[str, Any]]
    org_status: dict[str, dict[str, Any]]
    orgs: dict[str, str]
    tool_roles: dict[str, list[str]]
    assistants: list[dict[str, Any]]
    tools: list[dict[str, Any]]

    @property
    def desired(self) -> list[dict[str, Any]]:
        return [a for a in self.agents if a["active"] and self.orgs.get(a["org_id"]) == "active"]


def snapshot(b: Bench) -> Snapshot:
    with b.engine.connect() as conn:
        agents = [
            {k: str(v) if k in ("id", "org_id") else v for k, v in row.items()}
            for row in conn.execute(text("select * from agents")).mappings()
        ]
        orgs = {str(i): s for i, s in conn.execute(text("select id, status from organizations"))}
        status = {
            str(row["org_id"]): dict(row)
            for row in conn.execute(text("select * from reconciler.org_status")).mappings()
        }
        roles = {
            name: list(roles)
            for name, roles in conn.execute(
                text("select name, roles from reconciler.tool_definitions where enabled")
            )
        }
    assistants = httpx.get(f"{b.sim}/_sim/objects/assistant", timeout=60).json()
    tools = httpx.get(f"{b.sim}/_sim/objects/tool", timeout=60).json()
    return Snapshot(agents, status, orgs, roles, assistants, tools)


def state_checks(s: Snapshot, defaults: RenderDefaults, prune: bool) -> list[Check]:
    """What must hold of Postgres and Vapi once converged."""
    managed: dict[str, list[dict[str, Any]]] = {}
    for a in s.assistants:
        if _tags(a):
            managed.setdefault(str(_tags(a).get("agent_id")), []).append(a)
    by_name: dict[str, list[str]] = {}
    for t in s.tools:
        if ObservedTool(t).is_ours(BACKEND):
            by_name.setdefault(str(ObservedTool(t).function_name), []).append(str(t["id"]))
    return [
        *_agent_checks(s, managed, by_name, defaults),
        _tool_check(s, by_name),
        _cross_org_check(s),
        _status_check(s),
        _prune_check(s, managed, prune),
    ]


def _agent_checks(
    s: Snapshot,
    managed: Mapping[str, list[dict[str, Any]]],
    by_name: Mapping[str, list[str]],
    defaults: RenderDefaults,
) -> list[Check]:
    """Each desired agent: one managed assistant, rendered from its row, named by it."""
    tool_ids = {
        role: sorted(
            by_name[n][0] for n, roles in s.tool_roles.items() if role in roles and n in by_name
        )
        for role in ("inbound", "outbound")
    }
    one = Check("one_assistant_per_agent", 0, [])
    content = Check("content_matches", 0, [])
    named = Check("vapi_assistant_id", 0, [])
    for agent in s.desired:
        which = {"agent_id": agent["id"], "org_id": agent["org_id"]}
        found = managed.get(agent["id"], [])
        if len(found) != 1:
            one.fail(which | {"assistants": [a["id"] for a in found]})
            continue
        observed = found[0]
        changes = _content(agent, observed, tool_ids, defaults)
        if changes:
            content.fail(which | {"vapi_id": observed["id"], "changes": changes})
        if agent["vapi_assistant_id"] != observed["id"]:
            named.fail(which | {"row": agent["vapi_assistant_id"], "vapi": observed["id"]})
    return [one, content, named]


def _tool_check(s: Snapshot, by_name: Mapping[str, list[str]]) -> Check:
    """One Vapi tool per enabled definition."""
    check = Check("no_duplicate_tool", 0, [])
    for name in s.tool_roles:
        if len(by_name.get(name, [])) != 1:
            check.fail({"tool": name, "vapi_ids": by_name.get(name, [])})
    return check


def _cross_org_check(s: Snapshot) -> Check:
    """A managed assistant carries its agent's organization (and, while the agent is
    desired, its name); an agent row never names an assistant tagged for another
    organization."""
    check = Check("no_cross_org_write", 0, [])
    agents = {a["id"]: a for a in s.agents}
    desired = {a["id"] for a in s.desired}  # an orphan's content is no longer the controller's
    for a in s.assistants:
        tags = _tags(a)
        owner = agents.get(str(tags.get("agent_id")))
        if owner is not None and (
            tags.get("org_id") != owner["org_id"]
            or (owner["id"] in desired and a.get("name") != owner["name"])
        ):
            check.fail(
                {"vapi_id": a["id"], "tags": tags, "name": a.get("name"), "org_id": owner["org_id"]}
            )
    by_id = {str(a["id"]): a for a in s.assistants}
    for row in s.agents:
        named = by_id.get(str(row["vapi_assistant_id"]), {})
        meta = named.get("metadata")
        if isinstance(meta, Mapping) and meta.get("org_id") not in (None, row["org_id"]):
            check.fail(
                {
                    "agent_id": row["id"],
                    "org_id": row["org_id"],
                    "names": named["id"],
                    "tagged_for": meta.get("org_id"),
                }
            )
    return check


def _status_check(s: Snapshot) -> Check:
    check = Check("status_synced", 0, [])
    for org, status in sorted(s.orgs.items()):
        row = s.org_status.get(org) or {}
        if status == "active" and row.get("state") != "synced":
            check.fail({"org_id": org, "state": row.get("state"), "message": row.get("message")})
    return check


def _prune_check(s: Snapshot, managed: Mapping[str, list[dict[str, Any]]], prune: bool) -> Check:
    """With pruning on, no managed assistant outlives its agent (counted either way)."""
    desired = {a["id"] for a in s.desired}
    leftovers = [
        {"vapi_id": a["id"], "agent_id": agent_id, "org_id": _tags(a).get("org_id")}
        for agent_id, found in managed.items()
        for a in found
        if agent_id not in desired
    ]
    check = Check("pruned", 0, [], {"leftover_managed_assistants": len(leftovers)})
    for leftover in leftovers if prune else []:
        check.fail(leftover)
    return check


def _content(
    agent: Mapping[str, Any],
    observed: Mapping[str, Any],
    tool_ids: Mapping[str, list[str]],
    defaults: RenderDefaults,
) -> list[dict[str, Any]]:
    """Owned fields that differ, cleared ones included (a NULL first message means no
    greeting in Vapi)."""
    row = DesiredAgent(
        agent_id=uuid.UUID(agent["id"]),
        org_id=uuid.UUID(agent["org_id"]),
        role=agent["role"],
        name=agent["name"],
        system_prompt=agent["system_prompt"],
        first_message=agent["first_message"],
        voice=agent["voice"],
        voice_provider=agent["voice_provider"],
        language=agent["language"],
        model=agent["model"],
        temperature=float(agent["temperature"])
        if isinstance(agent["temperature"], Decimal)
        else agent["temperature"],
        max_tokens=agent["max_tokens"],
        max_call_duration=agent["max_call_duration"],
    )
    meta = observed.get("metadata")
    try:
        body = render_assistant(
            row,
            tool_ids=tool_ids[agent["role"]],
            defaults=defaults,
            backend_url=BACKEND,
            observed_metadata=meta if isinstance(meta, Mapping) else None,
        )
    except InvalidAgentError as exc:
        return [{"path": "-", "error": str(exc)}]
    body.setdefault("firstMessage", None)
    return [
        {"path": c.path, "vapi": _short(c.before), "desired": _short(c.after)}
        for c in diff(body, observed)
    ]


def _short(value: Any) -> Any:
    text_ = json.dumps(value, default=str)
    return value if len(text_) <= 120 else text_[:117] + "..."


def duplicates_created(
    writes: list[dict[str, Any]], deleted: list[tuple[float, str, str]]
) -> Check:
    """POSTs of an assistant for an agent while another of its assistants existed in Vapi
    (seen in the simulator's write log, whether pruned later or not)."""
    removals = {vapi_id: at for at, resource, vapi_id in deleted if resource == "assistant"}
    for w in writes:
        if w["method"] == "DELETE" and w["resource"] == "assistant":
            removals.setdefault(w["vapi_id"], w["at"])
    live: dict[str, list[tuple[float, str]]] = {}
    check = Check("no_duplicate_created", 0, [])
    for w in writes:
        if w["method"] != "POST" or w["resource"] != "assistant":
            continue
        agent = str(_tags(w["body"]).get("agent_id"))
        others = [
            (at, vid)
            for at, vid in live.get(agent, [])
            if removals.get(vid, float("inf")) > w["at"]
        ]
        if others:
            ids = {w["vapi_id"], *(vid for _, vid in others)}
            check.fail(
                {
                    "agent_id": agent,
                    "org_id": _tags(w["body"]).get("org_id"),
                    "posted": w["vapi_id"],
                    "at": w["at"],
                    "posted_at": _clock(w["at"]),
                    "while_alive": [vid for _, vid in others],
                    "history": [
                        f"{_clock(x['at'])} {x['method']} {x['vapi_id']}"
                        for x in writes
                        if x["vapi_id"] in ids
                    ]
                    + [
                        f"{_clock(at)} dashboard DELETE {vid}"
                        for at, _, vid in deleted
                        if vid in ids
                    ],
                }
            )
        live.setdefault(agent, []).append((w["at"], w["vapi_id"]))
    return check


def hostile_untouched(
    hostile: Mapping[str, Mapping[str, Any]], s: Snapshot, writes: list[dict[str, Any]]
) -> Check:
    """Objects the controller does not own: still there, as made, and never written."""
    check = Check("only_ours_touched", 0, [], {"hostile_objects": len(hostile)})
    present = {str(o["id"]): o for o in [*s.assistants, *s.tools]}
    written = {w["vapi_id"] for w in writes}
    for vapi_id, made in hostile.items():
        now = present.get(vapi_id)
        changed = now is None or any(now.get(k) != v for k, v in made.items() if k != "resource")
        if changed or vapi_id in written:
            check.fail({"vapi_id": vapi_id, "present": now is not None})
    return check


def plan_check(config: Path, env: Mapping[str, str]) -> Check:
    """``vapi-reconciler plan`` exits 0: the controller itself sees nothing left to do."""
    done = subprocess.run(
        [sys.executable, "-m", "controller", "plan", "--json", "--config", str(config)],
        env=dict(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    check = Check("plan_exit_0", 0, [], {"exit_code": done.returncode})
    if done.returncode == 0:
        return check
    try:
        pending = json.loads(done.stdout)
    except ValueError:
        check.fail(done.stderr[-2000:])
        return check
    check.info["summary"] = pending.get("summary")
    for org in pending.get("organizations", []):
        if org.get("actions") or org.get("blocked") or org.get("invalid"):
            check.fail({k: org.get(k) for k in ("org_id", "actions", "blocked", "invalid")})
    for action in pending.get("tools", {}).get("actions", []):
        check.fail({"tools": action})
    if not check.violations:
        check.fail({"pending": pending.get("summary")})
    return check


def log_findings(logs: list[Path]) -> dict[str, Any]:
    """Counts of what the replicas logged at WARNING and above, by message."""
    found: Counter[str] = Counter()
    for path in logs:
        for record in _records(path):
            level = record["level"]["name"]
            if level in ("WARNING", "ERROR", "CRITICAL"):
                found[f"{level} {record['message'][:90]}"] += 1
    return dict(found.most_common(20))


def _records(path: Path) -> Iterator[dict[str, Any]]:
    for line in path.read_text(errors="replace").splitlines():
        try:
            yield json.loads(line)["record"]
        except (ValueError, KeyError, TypeError):
            continue


def _ids(example: Any) -> Iterator[str]:
    """The Vapi and platform ids (UUIDs) an example names."""
    values = example.values() if isinstance(example, dict) else [example]
    for value in values:
        for item in value if isinstance(value, list) else [value]:
            try:
                yield str(uuid.UUID(str(item)))
            except ValueError:
                continue


def evidence(logs: list[Path], ids: set[str], limit: int = 12) -> list[str]:
    """Log lines of every replica naming one of ``ids``, in time order."""
    lines = []
    for path in logs:
        for record in _records(path):
            extra = json.dumps(record.get("extra", {}), default=str)
            if any(i in record["message"] or i in extra for i in ids):
                stamp = record["time"]["repr"][11:23]
                org = record.get("extra", {}).get("org_id", "-")
                lines.append(
                    f"{stamp} {path.stem} {record['level']['name']} org={org} {record['message']}"
                )
    lines.sort()
    return lines if len(lines) <= limit else [*lines[:4], "...", *lines[4 - limit :]]


# -- the scenario --------------------------------------------------------------------------


def chaos(args: argparse.Namespace) -> dict[str, Any]:
    seconds = 60 * args.minutes
    logdir = RESULTS / run_name(args)
    logdir.mkdir(parents=True, exist_ok=True)
    for old in logdir.glob("*.log"):
        old.unlink()
    config = CONFIG.format(
        relist=args.relist_seconds,
        resync=args.resync_seconds,
        prune=str(args.prune).lower(),
        lease=LEASE,
        port="{port}",
    )
    with (
        bench(args.orgs, rate=None, latency=0.0, burst=10) as b,
        _fleet(b, args, logdir, config) as fleet,
    ):
        settings = load_settings(fleet.replicas[0].config, environ={"BACKEND_URL": BACKEND})
        defaults = settings.defaults
        started = time.monotonic()
        initial = _converge(b, defaults, args, args.converge_timeout, fleet)
        if initial is None:
            sys.exit(f"the seeded account did not converge within {args.converge_timeout}s")
        campaign = Campaign(b, fleet, args)
        campaign.plan(seconds)
        campaign.run(seconds)
        campaign.calm()
        settled: dict[str, float | None] = {}
        converged = _converge(b, defaults, args, args.converge_timeout, fleet, settled)
        s = snapshot(b)
        writes = b.sim_get("/_sim/writes")
        checks = [
            *state_checks(s, defaults, args.prune),
            duplicates_created(writes, campaign.deleted),
            hostile_untouched(campaign.hostile, s, writes),
            plan_check(fleet.replicas[0].config, fleet.env(0)),
        ]
        fleet.watch()
        health = {r.name: fleet.healthy(r) for r in fleet.replicas}
        died = list(fleet.died)
        codes = fleet.stop_all()
        died += [
            {"replica": n, "exit_code": c, "at": "SIGTERM"} for n, c in codes.items() if c != 0
        ]
        checks.append(Check("no_replica_died", len(died), died, {"healthz": health}))
        checks.append(
            Check(
                "converged",
                0 if converged is not None else 1,
                [],
                {"timeout_s": args.converge_timeout},
            )
        )
        logs = [p for r in fleet.replicas for p in r.logs]
        for check in checks:
            if not check.passed:
                ids = {v for e in check.examples for v in _ids(e)}
                check.info["log_lines"] = evidence(logs, ids)
                for example in check.examples:
                    if isinstance(example, dict) and "at" in example:
                        example["faults_before"] = campaign.recent(example["at"])
        counts = b.requests()
    return {
        "scenario": "chaos",
        "seed": args.seed,
        "minutes": args.minutes,
        "orgs": args.orgs,
        "replicas": args.replicas,
        "prune": args.prune,
        "lease_seconds": LEASE,
        "initial_convergence_s": round(initial, 1),
        "convergence_s": None if converged is None else round(converged, 1),
        "convergence_s_by_check": settled,
        "wall_s": round(time.monotonic() - started, 1),
        "faults": dict(sorted(campaign.faults.items())),
        "changes": dict(sorted(campaign.changes.items())),
        "checks": {
            c.name: {
                "passed": c.passed,
                "violations": c.violations,
                "examples": c.examples[:EXAMPLES],
                **c.info,
            }
            for c in checks
        },
        "failed": [c.name for c in checks if not c.passed],
        "vapi_calls_by_status": dict(Counter(k.rsplit(" ", 1)[-1] for k in counts.elements())),
        "log_findings": log_findings(logs),
        "timeline": campaign.timeline,
        "logs": str(logdir),
    }


@contextmanager
def _fleet(b: Bench, args: argparse.Namespace, logdir: Path, config: str) -> Iterator[Fleet]:
    fleet = Fleet(b, args.replicas, logdir, config)
    try:
        for r in fleet.replicas:
            fleet.start(r)
        yield fleet
    finally:
        fleet.stop_all()


def _converge(
    b: Bench,
    defaults: RenderDefaults,
    args: argparse.Namespace,
    timeout: float,
    fleet: Fleet,
    settled: dict[str, float | None] | None = None,
) -> float | None:
    """Seconds until every state check passes, or None at the timeout. ``settled`` gets,
    per check, the seconds until it passed and held from then on (None: not at the end)."""
    start = time.monotonic()
    since: dict[str, float | None] = {}
    while True:
        fleet.watch()
        checks = state_checks(snapshot(b), defaults, args.prune)
        took = time.monotonic() - start
        for c in checks:
            first = since.get(c.name)
            since[c.name] = (took if first is None else first) if c.passed else None
        if settled is not None:
            settled.update({k: None if v is None else round(v, 1) for k, v in since.items()})
        if all(c.passed for c in checks):
            return took
        if took > timeout:
            return None
        time.sleep(1.0)


def summary(result: Mapping[str, Any]) -> str:
    lines = [
        f"chaos seed {result['seed']}: {result['minutes']} min, {result['orgs']} orgs, "
        f"{result['replicas']} replicas, prune {result['prune']}",
        f"faults:  {sum(result['faults'].values())}  "
        + ", ".join(f"{k} {v}" for k, v in result["faults"].items()),
        f"changes: {sum(result['changes'].values())}  "
        + ", ".join(f"{k} {v}" for k, v in result["changes"].items()),
        f"convergence: initial {result['initial_convergence_s']} s, after faults "
        f"{result['convergence_s']} s; by check "
        + ", ".join(f"{k} {v}" for k, v in result["convergence_s_by_check"].items()),
        "checks:",
    ]
    for name, check in result["checks"].items():
        verdict = "pass" if check["passed"] else f"FAIL ({check['violations']})"
        lines.append(f"  {name:<24} {verdict}")
        for example in check["examples"][:2] if not check["passed"] else []:
            if isinstance(example, dict):
                example = {k: v for k, v in example.items() if k not in ("faults_before", "at")}
            lines.append(f"      e.g. {json.dumps(example, default=str)[:400]}")
    return "\n".join(lines)


def run_name(args: argparse.Namespace) -> str:
    return f"chaos-seed{args.seed}-{args.orgs}orgs-{args.replicas}r-{args.minutes:g}min"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run chaos", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=4.0, help="how long faults go on")
    parser.add_argument("--orgs", type=int, default=40)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--prune", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--changes-per-minute", type=float, default=60.0)
    parser.add_argument("--converge-timeout", type=float, default=120.0)
    parser.add_argument("--resync-seconds", type=float, default=30.0)
    parser.add_argument(
        "--relist-seconds",
        type=float,
        default=600.0,
        help="the production default: a deletion in the dashboard must not wait for it",
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    result = chaos(args)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{run_name(args)}.json"
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(summary(result))
    print(f"written: {out}; replica logs: {result['logs']}")
    return 1 if result["failed"] else 0
