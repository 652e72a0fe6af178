"""vapi-reconciler: keeps a Vapi account in line with the platform's Postgres.

Layers (outer may import inner, never the reverse):
    controller.cli -> controller.reconcile -> desired_state, controller.vapi -> controller.core
``controller.core`` is pure: no I/O, no clock, no logger.
"""
