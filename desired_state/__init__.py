"""Desired state in Postgres: the platform's tables, the controller's own schema, migrations.

Talks to Postgres only. Must not talk to Vapi and must not decide anything: it loads
snapshots and records outcomes; the decisions live in ``controller.core``.
"""
