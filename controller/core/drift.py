"""Drift: how an observed Vapi object differs from the body the controller would send.

Only managed fields count: the comparison walks the *desired* body, so fields Vapi fills in
(ids, timestamps, defaults, ``latestVersion``) never show up as drift. Absent and ``null`` are
alike; ``model.toolIds`` is compared as a set. Must not do I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controller.core.desired import Baseline, fingerprint

SET_LIKE_PATHS = frozenset({"model.toolIds"})

_EXACT = frozenset({str, int, float, bool, type(None)})
"""Scalar types for which ``==`` between two values of the same type is what ``_equal``
says: such a pair that compares equal is no change (the walk's fast path)."""
_PLAIN = _EXACT | {list}
"""Types a decoded JSON body holds that are no ``Mapping``."""


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


def _is_mapping(value: Any) -> bool:
    """``isinstance(value, Mapping)``, decided without the ABC's check for the types bodies
    are made of (plain dicts, strings, numbers, lists): asked about 20 times per body, the
    ABC's check was a seventh of a walk's time."""
    kind = type(value)
    return kind is dict or (kind not in _PLAIN and isinstance(value, Mapping))


def project(desired: Any, observed: Any, path: str = "") -> Any:
    """``observed`` cut down to the shape of ``desired``: what the controller manages of it."""
    if _is_mapping(desired):
        source = observed if _is_mapping(observed) else {}
        return {
            key: project(value, source.get(key), _join(path, key)) for key, value in desired.items()
        }
    if path in SET_LIKE_PATHS and isinstance(observed, list):
        return sorted(str(item) for item in observed)
    if isinstance(desired, list) and isinstance(observed, list) and len(desired) == len(observed):
        return [project(d, o, path) for d, o in zip(desired, observed, strict=True)]
    return observed


def diff(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> list[FieldChange]:
    """Field-level changes needed to turn ``observed`` into ``desired`` (managed fields only).
    ``before`` is the observed value cut down to the shape of the desired one."""
    changes: list[FieldChange] = []
    _walk(desired, observed, "", changes)
    return changes


def _walk(desired: Any, observed: Any, path: str, out: list[FieldChange]) -> None:
    if _is_mapping(desired):
        source = observed if _is_mapping(observed) else {}
        for key, value in desired.items():
            found = source.get(key)
            if type(value) in _EXACT and type(found) is type(value) and value == found:
                continue
            _walk(value, found, _join(path, key), out)
        return
    if path in SET_LIKE_PATHS and isinstance(desired, list):
        if sorted(map(str, desired)) != sorted(map(str, observed or [])):
            out.append(FieldChange(path, project(desired, observed, path), desired))
        return
    if isinstance(desired, list):
        observed = project(desired, observed, path)
    if not _equal(desired, observed):
        out.append(FieldChange(path, observed, desired))


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return abs(float(a) - float(b)) < 1e-9
    return bool(a == b)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def observed_hash(desired: Mapping[str, Any], observed: Mapping[str, Any]) -> str:
    """Fingerprint of what Vapi holds of the managed fields: the baseline after a write."""
    return fingerprint(project(desired, observed))


def written_view(
    basis: Mapping[str, Any], sent: Mapping[str, Any], answer: Mapping[str, Any]
) -> dict[str, Any]:
    """What the controller may take as Vapi's state after a PATCH of ``sent``: the answer's
    value of each key sent, the pre-write observation (``basis``) of every other key."""
    return {**basis, **{key: answer.get(key) for key in sent}}


def drift(
    desired: Mapping[str, Any], observed: Mapping[str, Any], baseline: Baseline | None
) -> list[FieldChange]:
    """Changes needed, trusting the baseline of the controller's last write.

    Vapi may store a value differently from how it was sent. If nothing changed on either side
    since the last write (desired body and observed managed fields both match their recorded
    fingerprints), the object is in sync whatever the literal comparison says.
    """
    changes = diff(desired, observed)
    if (
        changes
        and baseline is not None
        and baseline.desired_hash == fingerprint(desired)
        and baseline.observed_hash == observed_hash(desired, observed)
    ):
        return []
    return changes
