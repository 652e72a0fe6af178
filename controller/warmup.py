"""What the first Vapi request will need, made beside start-up's own waiting.

``reconcile``, ``run`` and ``plan`` start this before they connect anywhere. Three costs of
their start-up are not on its critical path: importing the Vapi transport (aiohttp), loading
the CA certificates of its TLS context (OpenSSL, outside the GIL), and importing jsonschema
(the check of the tools' parameter schemas). A thread does them, in the order they are
needed, while the main thread waits on Postgres and then on Vapi's first listing; whatever
needs one first waits for it (a lock, the import lock). Issue 17: the first write within
0.8 s of process start.
"""

from __future__ import annotations

import threading

from controller.vapi.transport import tls_context


def start() -> None:
    threading.Thread(target=_warm, name="warmup", daemon=True).start()


def _warm() -> None:
    import controller.vapi.aiohttp_transport  # noqa: F401

    tls_context()
    from jsonschema.validators import Draft202012Validator

    Draft202012Validator.check_schema({"type": "object"})
