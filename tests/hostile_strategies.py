"""Hypothesis strategies for hostile agent rows: what a buggy or malicious platform could
store in ``agents``, limited only by what Postgres itself can hold (no NUL in text, no lone
surrogates in UTF-8)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

PG_TEXT = st.characters(codec="utf-8", exclude_characters="\x00")
"""Every Unicode plane, control characters included; only what Postgres refuses left out."""


def pg_text(*, max_size: int) -> st.SearchStrategy[str]:
    return st.text(PG_TEXT, max_size=max_size)


def huge_text() -> st.SearchStrategy[str]:
    return st.sampled_from(["x", "\u0301", "\U0001f600", "\n", " "]).map(lambda c: c * 150_001)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


VALID_ROW: dict[str, Any] = {
    "role": "inbound",
    "name": "Front desk",
    "system_prompt": "You are the front desk of a clinic.",
    "first_message": "Hello!",
    "voice": "Elliot",
    "voice_provider": "vapi",
    "language": "en-US",
    "model": "gpt-4o",
    "temperature": 0.5,
    "max_tokens": 300,
    "max_call_duration": 600,
}


def agent_rows() -> st.SearchStrategy[dict[str, Any]]:
    """Column values of one ``agents`` row (ids, org and flags aside): a valid row with up
    to all of its fields replaced by hostile values, so that each kind of damage is also
    seen alone."""
    return st.builds(
        lambda hostile, keys: {**VALID_ROW, **{k: hostile[k] for k in keys}},
        _hostile_values(),
        st.sets(st.sampled_from(sorted(VALID_ROW))) | st.just(set(VALID_ROW)),
    )


def _hostile_values() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {
            "role": st.sampled_from(["inbound", "outbound"]) | pg_text(max_size=12),
            "name": pg_text(max_size=60),
            "system_prompt": pg_text(max_size=300) | huge_text(),
            "first_message": maybe(pg_text(max_size=200) | huge_text()),
            "voice": maybe(pg_text(max_size=40)),
            "voice_provider": maybe(
                st.sampled_from(["vapi", "elevenlabs", "openai", "azure", "playht", "rime"])
                | pg_text(max_size=12)
            ),
            "language": maybe(st.sampled_from(["en-US", "fr", "de-DE"]) | pg_text(max_size=12)),
            "model": maybe(st.sampled_from(["gpt-4o", "claude-3-5-sonnet"]) | pg_text(max_size=40)),
            "temperature": maybe(st.floats(-5, 5) | st.floats()),
            "max_tokens": maybe(st.integers(-(2**31), 2**31 - 1)),
            "max_call_duration": maybe(st.integers(-(2**31), 2**31 - 1)),
        }
    )


def as_numeric(value: float | None) -> Decimal | None:
    """A temperature as the ``numeric`` column stores it (NaN and infinities included)."""
    return None if value is None else Decimal(repr(value)) if value == value else Decimal("NaN")
