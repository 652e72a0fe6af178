"""Security findings: Vapi credentials stored per organization in ``integrations.config``.

The controller runs under one master key and never uses a per-organization one. Finding one
means someone pasted a key where any platform user with read access sees it; it is reported
once (a log line, a metric, the ``status`` output) by where it is, never by what it is.
Findings live in ``reconciler.security_findings`` so restarts and replicas report each once.

An ``integrations`` row without an organization (the live platform allows a NULL
``org_id``) is a finding like any other: it is stored under ``NO_ORG``, the nil UUID that no
organization has, and its location names the row's id, the only thing that finds it. Must
never stop a pass: nothing here refuses a row. A public key (``vapi_public_key``,
``publicKey``) is meant to be seen and is not a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

PER_ORG_VAPI_KEY = "per_org_vapi_key"
NO_ORG = UUID(int=0)
"""The organization of a finding in a row whose ``org_id`` is NULL."""
_CREDENTIAL = re.compile(r"(key|secret|token|password|credential|bearer)", re.IGNORECASE)
_PUBLIC = re.compile(r"public", re.IGNORECASE)
_SECRET = re.compile(r"(secret|private|password|token)", re.IGNORECASE)
_VAPI = re.compile(r"vapi", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    org_id: UUID
    kind: str
    location: str
    """Where the credential sits, e.g. ``integrations[vapi].config.api_key``; never its value."""


def credential_paths(config: Any, *, vapi_provider: bool) -> Iterator[str]:
    """Paths of non-empty values whose key names a Vapi credential: ``vapi_api_key``,
    ``vapiSecretKey``, ``vapi.private_key``, or any credential-like key under a Vapi
    integration."""
    yield from _walk(config, "", inside_vapi=vapi_provider)


def _walk(node: Any, path: str, *, inside_vapi: bool) -> Iterator[str]:
    if isinstance(node, dict):
        for name, value in node.items():
            here = f"{path}.{name}" if path else str(name)
            vapi = inside_vapi or bool(_VAPI.search(str(name)))
            if vapi and _credential(str(name)) and _present(value):
                yield here
            else:
                yield from _walk(value, here, inside_vapi=vapi)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]", inside_vapi=inside_vapi)


def _credential(name: str) -> bool:
    """A key name that holds a secret: ``api_key``, ``private_key``; not ``public_key``."""
    return bool(_CREDENTIAL.search(name)) and not (
        _PUBLIC.search(name) and not _SECRET.search(name)
    )


def _present(value: Any) -> bool:
    return value not in (None, "", {}, [])


async def record_findings(conn: AsyncConnection) -> list[Finding]:
    """Scan ``integrations``; store what is there now; return the findings not seen before.
    Findings whose credential was removed are forgotten (a new one is reported again)."""
    rows = await conn.execute(
        text("""
            select id, org_id, provider, config from integrations
            where provider ilike '%vapi%' or config::text ilike '%vapi%'
        """)
    )
    found = sorted(
        {
            Finding(row.org_id or NO_ORG, PER_ORG_VAPI_KEY, f"{_row_location(row)}.config.{path}")
            for row in rows
            for path in credential_paths(row.config, vapi_provider=bool(_VAPI.search(row.provider)))
        },
        key=lambda f: (str(f.org_id), f.location),
    )
    await conn.execute(
        text("""
            delete from reconciler.security_findings f
            where not exists (
              select 1 from unnest(cast(:orgs as uuid[]), cast(:locations as text[]))
                as now_found(org_id, location)
              where now_found.org_id = f.org_id and now_found.location = f.location)
        """),
        {"orgs": [f.org_id for f in found], "locations": [f.location for f in found]},
    )
    if not found:
        return []
    inserted = await conn.execute(
        text("""
            insert into reconciler.security_findings (org_id, kind, location)
            select org_id, :kind, location
            from unnest(cast(:orgs as uuid[]), cast(:locations as text[])) as f(org_id, location)
            on conflict (org_id, kind, location) do update set last_seen_at = now()
            returning org_id, location, (xmax = 0) as new
        """),
        {
            "kind": PER_ORG_VAPI_KEY,
            "orgs": [f.org_id for f in found],
            "locations": [f.location for f in found],
        },
    )
    return [Finding(row.org_id, PER_ORG_VAPI_KEY, row.location) for row in inserted if row.new]


def _row_location(row: Any) -> str:
    """``integrations[vapi]``; ``integrations[vapi, id=...]`` when no organization names it."""
    if row.org_id is None:
        return f"integrations[{row.provider}, id={row.id}]"
    return f"integrations[{row.provider}]"


async def load_findings(conn: AsyncConnection) -> Sequence[Finding]:
    rows = await conn.execute(
        text(
            "select org_id, kind, location from reconciler.security_findings "
            "order by org_id, location"
        )
    )
    return [Finding(row.org_id, row.kind, row.location) for row in rows]
