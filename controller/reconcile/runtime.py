"""What a reconcile runs with: the database, the Vapi client and the settings in force."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from controller.config import Settings
from controller.core.keys import AccountTools, WorkKey
from controller.vapi.client import VapiClient


@dataclass
class Runtime:
    """``settings`` may be swapped while running (hot reload): every write checks the
    settings in force at that moment."""

    engine: AsyncEngine
    client: VapiClient
    settings: Settings

    def writes_allowed(self, key: WorkKey) -> bool:
        """Writes for ``key`` are allowed by the settings in force now (mode, pauses)."""
        settings = self.settings
        if not settings.writes_enabled:
            return False
        return isinstance(key, AccountTools) or not settings.is_paused(key)
