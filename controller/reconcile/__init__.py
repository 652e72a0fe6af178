"""The reconcile: load desired -> observe -> plan -> apply -> record outcome.

The only layer that combines Postgres (``desired_state``) and Vapi (``controller.vapi``).
Decisions are not made here but in ``controller.core.plan``; this layer runs them.
"""
