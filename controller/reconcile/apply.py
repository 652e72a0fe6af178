"""Apply actions: one Vapi write each, recorded in Postgres around it.

A create records its intent first (committed; one statement for all of a plan's creates),
then POSTs. No transaction is held open across a Vapi call. What a write leaves in Postgres
(``reconciler.record_write``: the agent's link, the registry's baseline, the audit row,
under the claim's fence) is written in one of two ways:

- an organization's visit keeps its writes' records (``Applier.deferred``) and they are
  written with the claim's completion, one statement for a whole group commit
  (``controller.daemon.settle``; the one-shot commands: one transaction per organization);
  the audit rows whatever the fence, dated back to their writes. A visit ended by an outage
  or a cancellation records them on its own first (``Chain.finish_org``). A crash, or
  Postgres down, before that commit loses them, and nothing else: a create's intent
  stays, so the next visit finds the assistant by its ownership tag and adopts it (the
  audit then shows the adoption, not the create); an update's next visit compares Vapi's
  copy afresh; the agent's link is made again. An organization's writes then cost one
  statement of their own (its creates' intents) instead of one more for each write;
- the account's tools are recorded as each write lands (later visits read their ids from
  the registry).

An outcome that is unknown is left as intent: the next pass observes and adopts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.actions import (
    Action,
    AdoptTool,
    BindPhoneNumber,
    CreateAssistant,
    CreateTool,
    DeleteAssistant,
    DeleteTool,
    LinkAssistant,
    ReleasePhoneNumber,
    UpdateAssistant,
    UpdateTool,
    is_vapi_write,
)
from controller.core.desired import fingerprint
from controller.core.drift import observed_hash, written_view
from controller.core.observed import ObservedState
from controller.core.outcome import ActionResult, Reason
from controller.core.ownership import owned_view
from controller.reconcile.lease import Lease
from controller.secret import redact, scrub
from controller.vapi.client import Resource, VapiClient
from controller.vapi.errors import (
    NotFoundError,
    OutcomeUnknownError,
    RateLimitedError,
    UnauthorizedError,
    VapiClientError,
    VapiError,
    VapiServerError,
    VapiTimeoutError,
    WriteAbandonedError,
)
from desired_state import records
from desired_state.direct import DirectConnection, direct
from desired_state.records import (
    AuditCause,
    AuditEntry,
    AuditOutcome,
    Fence,
    FieldWrite,
    Intent,
    Kind,
    WriteRecord,
)


@dataclass
class Applier:
    client: VapiClient
    engine: AsyncEngine
    reconcile_id: str
    observed: ObservedState | None = None
    """Written through with every answer, so the controller's own writes are not drift."""
    lease: Lease = field(default_factory=Lease)
    """Asked right before every Vapi write is sent: a write whose claim may have expired is
    abandoned (``WriteAbandonedError`` reaches the caller)."""
    fence: Fence | None = None
    """The claim's fencing token: ``agents.vapi_assistant_id`` is linked only under it."""
    deferred: list[WriteRecord] | None = None
    """When a list (an organization's visit), the writes' records are kept here, to be
    written with the claim's completion (``controller.reconcile.status.Recorded``); else
    (the account's tools, which later visits read from the registry) each is written as
    its write lands."""
    _started: float = field(default=0.0, init=False)
    created: dict[UUID, str] = field(default_factory=dict)
    """Agent id -> the assistant created for it by this applier (a bind in the same plan
    routes the agent's number to it)."""
    _declared: dict[tuple[Kind, str], datetime] = field(default_factory=dict, init=False)
    """Creates whose intent ``declare`` recorded ahead, not sent yet: when it was recorded."""

    def _direct(self) -> AbstractAsyncContextManager[DirectConnection]:
        """The hot path's connection (``desired_state.direct``): autocommit as well."""
        return direct(self.engine).connection()

    async def declare(self, actions: Iterable[Action]) -> None:
        """The intents of every create among ``actions`` in one statement, before the first
        is sent; each create then records none of its own. Those a plan cut short never
        sent are withdrawn (``withdraw``); after a crash the next pass confirms in Vapi that
        nothing was created before it creates."""
        intents = [_intent(a) for a in actions if isinstance(a, CreateTool | CreateAssistant)]
        if intents:
            async with self._direct() as conn:
                self._declared.update(await records.record_intents(conn, intents))

    async def withdraw(self) -> None:
        """Drop the declared intents of creates never sent: no doubt is left about them."""
        if self._declared:
            unsent, self._declared = self._declared, {}
            async with self.engine.begin() as conn:
                await records.drop_intents(conn, unsent)

    async def _route(self, action: Action, number_id: str, assistant_id: str | None) -> None:
        """``PATCH /phone-number/{id} {"assistantId": ...}``: idempotent, so a crash between a
        create and its bind heals on the next pass."""
        response = await self._update("phone-number", number_id, {"assistantId": assistant_id})
        async with self._direct() as conn:
            await records.write_audit(conn, [self._entry(action, vapi_id=str(response["id"]))])

    async def apply(self, action: Action) -> ActionResult:
        description = describe(action)
        self._started = time.monotonic()
        try:
            await self._run(action)
        except VapiError as exc:
            await self._audit(action, outcome=_outcome(exc), status=exc.status, error=str(exc))
            return ActionResult(
                type(action).__name__,
                description,
                ok=False,
                write=is_vapi_write(action),
                error=redact(str(exc)),
                transient=_transient(exc),
                reason=_reason(exc),
            )
        return ActionResult(
            type(action).__name__, description, ok=True, write=is_vapi_write(action)
        )

    async def _run(self, action: Action) -> None:
        match action:
            case CreateTool():
                await self._create({"type": "function", **action.body}, action)
            case AdoptTool():
                await self._record("tool", action.tool_name, None, action.vapi_id, None, None)
            case UpdateTool():
                response = await self._update("tool", action.vapi_id, action.body)
                await self._record(
                    "tool",
                    action.tool_name,
                    None,
                    action.vapi_id,
                    action.body,
                    written_view(action.basis, action.body, response),
                    audit=action,
                )
            case DeleteTool():
                await self._delete("tool", action.vapi_id, action)
            case CreateAssistant():
                await self._create(action.body, action)
            case LinkAssistant():
                await self._write_record(
                    WriteRecord(
                        "assistant",
                        str(action.agent_id),
                        action.org_id,
                        action.vapi_id,
                        agent_id=action.agent_id,
                    )
                )
            case UpdateAssistant():
                response = await self._update("assistant", action.vapi_id, action.patch)
                await self._record(
                    "assistant",
                    str(action.agent_id),
                    action.org_id,
                    action.vapi_id,
                    action.desired,
                    owned_view(
                        written_view(action.basis, action.patch, response),
                        action.owned_tool_ids,
                    ),
                    audit=action,
                    agent_id=action.agent_id,
                )
            case DeleteAssistant():
                await self._delete("assistant", action.vapi_id, action)
            case BindPhoneNumber():
                target = action.assistant_id or self.created.get(action.agent_id)
                if target is None:  # the create it waits for did not happen
                    raise WriteAbandonedError(f"number {action.number_id}: no assistant to bind")
                await self._route(action, action.number_id, target)
            case ReleasePhoneNumber():
                await self._route(action, action.number_id, None)

    async def _create(self, body: Mapping[str, Any], action: CreateTool | CreateAssistant) -> None:
        intent = _intent(action)
        resource, owner_key, org_id = intent.kind, intent.owner_key, intent.org_id
        recorded = self._declared.pop((resource, owner_key), None)
        if recorded is None:
            async with self._direct() as conn:
                recorded = (await records.record_intents(conn, [intent]))[resource, owner_key]
        try:
            response = await self.client.create(resource, body, may_write=self.lease.alive)
        except (VapiClientError, WriteAbandonedError):  # refused or never sent: no doubt
            async with self.engine.begin() as conn:
                await records.drop_intents(conn, {(resource, owner_key): recorded})
            raise
        if self.observed is not None:
            self.observed.upsert(resource, response)
        desired = {k: v for k, v in body.items() if k != "type"}
        agent_id = action.agent_id if isinstance(action, CreateAssistant) else None
        if agent_id is not None:
            self.created[agent_id] = str(response["id"])
        await self._record(
            resource,
            owner_key,
            org_id,
            str(response["id"]),
            desired,
            response,
            audit=action,
            agent_id=agent_id,
        )

    async def _update(
        self, resource: Resource, vapi_id: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        try:
            response = await self.client.update(resource, vapi_id, body, may_write=self.lease.alive)
        except NotFoundError:
            if self.observed is not None:  # deleted behind our back: missing, not down
                self.observed.remove(resource, vapi_id)
            raise
        if self.observed is not None:
            self.observed.upsert(resource, response)
        return response

    async def _record(
        self,
        kind: Kind,
        owner_key: str,
        org_id: UUID | None,
        vapi_id: str,
        desired: Mapping[str, Any] | None,
        response: Mapping[str, Any] | None,
        *,
        audit: Action | None = None,
        agent_id: UUID | None = None,
    ) -> None:
        """The id and the baseline: the response of this write, not the request."""
        await self._write_record(
            WriteRecord(
                kind,
                owner_key,
                org_id,
                vapi_id,
                desired_hash=fingerprint(desired) if desired is not None else None,
                observed_hash=observed_hash(desired, response)
                if desired is not None and response is not None
                else None,
                row_hash=getattr(audit, "row_hash", None),
                settings_hash=getattr(audit, "settings_hash", None),
                agent_id=agent_id,
                audit=self._entry(audit, vapi_id=vapi_id) if audit is not None else None,
            )
        )

    async def _write_record(self, write: WriteRecord) -> None:
        """Fenced out (another replica owns the organization now), nothing lands: not even
        the agent's link."""
        if self.deferred is not None:
            self.deferred.append(write)
            return
        async with self._direct() as conn:
            try:
                await records.record_write(conn, write, self.fence)
            except records.FencedOutError as exc:
                raise WriteAbandonedError(f"not linked: {exc}") from None

    async def _delete(
        self, resource: Resource, vapi_id: str, action: DeleteTool | DeleteAssistant
    ) -> None:
        await self.client.delete(resource, vapi_id, may_write=self.lease.alive)
        if self.observed is not None:
            self.observed.remove(resource, vapi_id)
        async with self._direct() as conn, conn.transaction():
            await records.forget(conn, vapi_id=vapi_id)
            await records.announce_gone(conn, resource=resource, vapi_id=vapi_id)
            await records.write_audit(conn, [self._entry(action, vapi_id=vapi_id)])

    async def _audit(
        self,
        action: Action,
        *,
        outcome: AuditOutcome,
        status: int | None,
        error: str,
        duration_ms: int | None = None,
    ) -> None:
        entry = self._entry(
            action,
            vapi_id=getattr(action, "vapi_id", None) or getattr(action, "number_id", None),
            outcome=outcome,
            status=status,
            error=error,
            duration_ms=duration_ms,
        )
        async with self._direct() as conn:
            await records.write_audit(conn, [entry])

    def _entry(
        self,
        action: Action,
        *,
        vapi_id: str | None,
        outcome: AuditOutcome = "ok",
        status: int | None = None,
        error: str = "",
        duration_ms: int | None = None,
    ) -> AuditEntry:
        """The audit row of one write: what changed (redacted), why, and how it went (the
        status Vapi answered: the documented success code unless an error said otherwise;
        the time since the action began)."""
        method, path = _request_of(action)
        if status is None and outcome == "ok":
            status = SUCCESS_STATUS.get(method)
        if duration_ms is None:
            duration_ms = round((time.monotonic() - self._started) * 1000)
        return AuditEntry(
            reconcile_id=self.reconcile_id,
            org_id=getattr(action, "org_id", None),
            action=type(action).__name__,
            vapi_id=vapi_id,
            method=method,
            path=path,
            status_code=status,
            outcome=outcome,
            detail={"error": redact(error)[:2000]} if error else {},
            agent_id=getattr(action, "agent_id", None),
            cause=_cause_of(action),
            changes=_changes_of(action),
            duration_ms=duration_ms,
        )


def _intent(action: CreateTool | CreateAssistant) -> Intent:
    """The registry row a create is recorded under: a tool by its name, an assistant by
    its agent."""
    if isinstance(action, CreateTool):
        return Intent("tool", action.tool_name, None)
    return Intent("assistant", str(action.agent_id), action.org_id)


SUCCESS_STATUS = {"POST": 201, "PATCH": 200, "DELETE": 200}
"""What Vapi answers a write that succeeded (VAPI.md)."""


def describe(action: Action) -> str:
    match action:
        case CreateTool() | AdoptTool() | UpdateTool() | DeleteTool():
            return f"{type(action).__name__} {action.tool_name}"
        case CreateAssistant() | UpdateAssistant() | LinkAssistant():
            return f"{type(action).__name__} agent {action.agent_id}"
        case DeleteAssistant():
            return f"DeleteAssistant {action.vapi_id}"
        case BindPhoneNumber():
            return f"BindPhoneNumber {action.number_id} for agent {action.agent_id}"
        case ReleasePhoneNumber():
            return f"ReleasePhoneNumber {action.number_id}"


def _request_of(action: Action) -> tuple[str, str]:
    match action:
        case CreateTool():
            return "POST", "/tool"
        case UpdateTool():
            return "PATCH", "/tool/{id}"
        case DeleteTool():
            return "DELETE", "/tool/{id}"
        case CreateAssistant():
            return "POST", "/assistant"
        case UpdateAssistant():
            return "PATCH", "/assistant/{id}"
        case DeleteAssistant():
            return "DELETE", "/assistant/{id}"
        case BindPhoneNumber() | ReleasePhoneNumber():
            return "PATCH", "/phone-number/{id}"
        case AdoptTool() | LinkAssistant():
            return "NONE", "(registry)"


_CAUSES: dict[str, AuditCause] = {
    "desired": "desired",
    "drift": "drift",
    "adopt": "adoption",
    "relink": "relink",
    "config": "config",
}


def _cause_of(action: Action) -> AuditCause:
    match action:
        case UpdateAssistant() | UpdateTool():
            return _CAUSES[action.cause]
        case CreateAssistant() | CreateTool():
            return "desired"
        case AdoptTool():
            return "adoption"
        case LinkAssistant():
            return "relink"
        case BindPhoneNumber():
            return _CAUSES[action.cause]
        case DeleteAssistant() if action.duplicate_of is not None:
            return "duplicate"
        case DeleteAssistant() | DeleteTool() | ReleasePhoneNumber():
            return "prune"


def _changes_of(action: Action) -> tuple[FieldWrite, ...]:
    """The managed fields written, before and after, with secrets redacted: every top-level
    field of a create's body, the changed fields of an update, none for the rest."""
    match action:
        case UpdateAssistant() | UpdateTool():
            return tuple(
                FieldWrite(c.path, scrub(c.before, key=c.path), scrub(c.after, key=c.path))
                for c in action.changes
            )
        case CreateAssistant() | CreateTool():
            return tuple(
                FieldWrite(name, None, scrub(value, key=name))
                for name, value in sorted(action.body.items())
            )
        case BindPhoneNumber():
            return (FieldWrite("assistantId", action.previous, action.assistant_id),)
        case ReleasePhoneNumber():
            return (FieldWrite("assistantId", action.assistant_id, None),)
        case _:
            return ()


def _outcome(exc: VapiError) -> AuditOutcome:
    return "unknown" if isinstance(exc, OutcomeUnknownError) else "error"


def _reason(exc: VapiError) -> Reason:
    if isinstance(exc, NotFoundError):
        return "vapi_object_gone"
    if isinstance(exc, UnauthorizedError):
        return "vapi_key_rejected"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, VapiClientError):
        return "vapi_rejected"
    return "vapi_unavailable"


def _transient(exc: VapiError) -> bool:
    return isinstance(
        exc,
        OutcomeUnknownError | RateLimitedError | VapiServerError | VapiTimeoutError | NotFoundError,
    )
