"""Report security findings once: a warning per new finding, the totals for the metric."""

from __future__ import annotations

from collections import Counter

from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine

from desired_state.findings import load_findings, record_findings


async def report_findings(engine: AsyncEngine) -> Counter[str]:
    """Scan ``integrations``; log each finding not reported before; findings per kind now."""
    async with engine.begin() as conn:
        new = await record_findings(conn)
        current = await load_findings(conn)
    for finding in new:
        logger.bind(org_id=str(finding.org_id)).warning(
            "security finding {}: a Vapi credential is stored at {}; the controller never "
            "uses it (it runs under the master key only). Remove it from the platform.",
            finding.kind,
            finding.location,
        )
    return Counter(f.kind for f in current)
