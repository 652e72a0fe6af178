"""Talking to Vapi over HTTP: the client, its errors, rate limiting and complete listings.

Must not know about Postgres or plans. Must never put the master key into any text.
"""
