"""Apply actions: one Vapi write each, recorded in Postgres around it.

A create records its intent first (committed), then POSTs, then records the id. An outcome
that is unknown is left as intent: the next pass observes and adopts. No transaction is held
open across a Vapi call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy.ext.asyncio import AsyncEngine

from controller.core.actions import (
    Action,
    AdoptTool,
    CreateAssistant,
    CreateTool,
    DeleteAssistant,
    DeleteTool,
    LinkAssistant,
    UpdateAssistant,
    UpdateTool,
    is_vapi_write,
)
from controller.core.desired import fingerprint
from controller.core.drift import observed_hash
from controller.core.observed import ObservedState
from controller.core.outcome import ActionResult, Reason
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
)
from desired_state import records
from desired_state.records import AuditCause, AuditEntry, AuditOutcome, FieldWrite, Kind


@dataclass
class Applier:
    client: VapiClient
    engine: AsyncEngine
    reconcile_id: str
    observed: ObservedState | None = None
    """Written through with every answer, so the controller's own writes are not drift."""

    async def apply(self, action: Action) -> ActionResult:
        description = describe(action)
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
                await self._create(
                    "tool", action.tool_name, None, {"type": "function", **action.body}, action
                )
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
                    response,
                    audit=action,
                )
            case DeleteTool():
                await self._delete("tool", action.vapi_id, action)
            case CreateAssistant():
                await self._create(
                    "assistant", str(action.agent_id), action.org_id, action.body, action
                )
            case LinkAssistant():
                async with self.engine.begin() as conn:
                    await records.link_agent(conn, agent_id=action.agent_id, vapi_id=action.vapi_id)
                    await records.record_present(
                        conn,
                        kind="assistant",
                        owner_key=str(action.agent_id),
                        org_id=action.org_id,
                        vapi_id=action.vapi_id,
                        desired_hash=None,
                        observed_hash=None,
                    )
            case UpdateAssistant():
                response = await self._update("assistant", action.vapi_id, action.patch)
                await self._record(
                    "assistant",
                    str(action.agent_id),
                    action.org_id,
                    action.vapi_id,
                    action.desired,
                    response,
                    audit=action,
                    agent_id=action.agent_id,
                )
            case DeleteAssistant():
                await self._delete("assistant", action.vapi_id, action)

    async def _create(
        self,
        resource: Resource,
        owner_key: str,
        org_id: UUID | None,
        body: Mapping[str, Any],
        action: CreateTool | CreateAssistant,
    ) -> None:
        async with self.engine.begin() as conn:
            await records.record_intent(conn, kind=resource, owner_key=owner_key, org_id=org_id)
        try:
            response = await self.client.create(resource, body)
        except VapiClientError:  # refused (429, 4xx): nothing was created, nothing to doubt
            async with self.engine.begin() as conn:
                await records.drop_intent(conn, kind=resource, owner_key=owner_key)
            raise
        if self.observed is not None:
            self.observed.upsert(resource, response)
        desired = {k: v for k, v in body.items() if k != "type"}
        agent_id = action.agent_id if isinstance(action, CreateAssistant) else None
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
        response = await self.client.update(resource, vapi_id, body)
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
        async with self.engine.begin() as conn:
            await records.record_present(
                conn,
                kind=kind,
                owner_key=owner_key,
                org_id=org_id,
                vapi_id=vapi_id,
                desired_hash=fingerprint(desired) if desired is not None else None,
                observed_hash=observed_hash(desired, response)
                if desired is not None and response is not None
                else None,
            )
            if agent_id is not None:
                await records.link_agent(conn, agent_id=agent_id, vapi_id=vapi_id)
            if audit is not None:
                await records.write_audit(conn, [self._entry(audit, vapi_id=vapi_id)])

    async def _delete(
        self, resource: Resource, vapi_id: str, action: DeleteTool | DeleteAssistant
    ) -> None:
        await self.client.delete(resource, vapi_id)
        if self.observed is not None:
            self.observed.remove(resource, vapi_id)
        async with self.engine.begin() as conn:
            await records.forget(conn, vapi_id=vapi_id)
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
            vapi_id=getattr(action, "vapi_id", None),
            outcome=outcome,
            status=status,
            error=error,
            duration_ms=duration_ms,
        )
        async with self.engine.begin() as conn:
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
        """The audit row of one write: what changed (redacted), why, and how it went."""
        method, path = _request_of(action)
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


def describe(action: Action) -> str:
    match action:
        case CreateTool() | AdoptTool() | UpdateTool() | DeleteTool():
            return f"{type(action).__name__} {action.tool_name}"
        case CreateAssistant() | UpdateAssistant() | LinkAssistant():
            return f"{type(action).__name__} agent {action.agent_id}"
        case DeleteAssistant():
            return f"DeleteAssistant {action.vapi_id}"


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
        case AdoptTool() | LinkAssistant():
            return "NONE", "(registry)"


_CAUSES: dict[str, AuditCause] = {"desired": "desired", "drift": "drift", "adopt": "adoption"}


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
        case DeleteAssistant() | DeleteTool():
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
        case _:
            return ()


def _outcome(exc: VapiError) -> AuditOutcome:
    return "unknown" if isinstance(exc, OutcomeUnknownError) else "error"


def _reason(exc: VapiError) -> Reason:
    if isinstance(exc, UnauthorizedError):
        return "vapi_key_rejected"
    if isinstance(exc, RateLimitedError):
        return "rate_limited"
    if isinstance(exc, VapiClientError) and not isinstance(exc, NotFoundError):
        return "vapi_rejected"
    return "vapi_unavailable"


def _transient(exc: VapiError) -> bool:
    return isinstance(
        exc,
        OutcomeUnknownError | RateLimitedError | VapiServerError | VapiTimeoutError | NotFoundError,
    )
