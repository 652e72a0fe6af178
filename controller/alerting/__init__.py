"""Alerting on unreconciled organizations: payloads, sinks and delivery.

Delivery runs beside reconciling, from an outbox in Postgres: a sink that is down is retried
with backoff and never slows a reconcile. Must not put the master key in any payload.
"""
