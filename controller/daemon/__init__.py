"""``vapi-reconciler run``: the long-running controller.

Postgres is the coordinator: a durable work row per organization, claimed under a lease with
a fencing token; NOTIFY wakes it, polling guarantees it. Vapi is watched through an
observed-state cache. Must not hold a database transaction across a Vapi call.
"""
