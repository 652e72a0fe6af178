"""The pure core: desired and observed state, rendering, drift and the plan.

Must not do I/O of any kind: no database, no HTTP, no clock, no logger, no randomness. Every
function here is a function of its arguments, so false drift is caught in table-driven tests.
"""
