"""Work keys: what one unit of reconcile work is about.

An organization (its id) or the account's tools, which every organization shares and which
are reconciled as one unit. Typed, so the tools can never be mistaken for an organization.
"""

from __future__ import annotations

import enum
from uuid import UUID


class AccountTools(enum.Enum):
    TOOLS = "tools"

    def __str__(self) -> str:
        return "tools"


TOOLS = AccountTools.TOOLS
WorkKey = UUID | AccountTools
