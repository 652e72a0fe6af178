"""vapi-reconciler: keeps a Vapi account in line with the platform's Postgres.

Layers (outer may import inner, never the reverse):
    controller.cli -> controller.reconcile -> desired_state, controller.vapi -> controller.core
``controller.core`` is pure: no I/O, no clock, no logger.
"""

import sys

# httpx imports its own command line (rich, pygments: tens of milliseconds at every start)
# whenever rich is installed; the controller never runs it. A None entry makes that import
# fail, which httpx expects (its ``main`` then only says the command line is not installed).
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
