"""desired_state.direct.json_rows: rows as the one JSON document the hot statements read."""

from __future__ import annotations

import json
from uuid import UUID

import pytest

from desired_state.direct import json_rows

ORG = UUID("11111111-2222-3333-4444-555555555555")


def test_rows_keep_their_values_and_uuids_become_text() -> None:
    text = json_rows([{"org_id": ORG, "due_in": 1.5, "error": None, "failed": True}])
    assert json.loads(text) == [{"org_id": str(ORG), "due_in": 1.5, "error": None, "failed": True}]


def test_a_nul_becomes_a_replacement_character_and_a_literal_escape_stays() -> None:
    text = json_rows([{"before": "a\x00b", "literal": "\\u0000", "both": "\\\x00"}])
    assert "\\u0000" not in text.replace("\\\\u0000", "")
    assert json.loads(text) == [{"before": "a\ufffdb", "literal": "\\u0000", "both": "\\\ufffd"}]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), object()])
def test_what_json_cannot_carry_is_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        json_rows([{"value": value}])
