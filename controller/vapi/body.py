"""Read a response body into memory with a hard cap on its decoded size.

httpx decodes gzip a whole network chunk at a time, so a 64 KiB chunk of a gzip bomb becomes
64 MiB before anyone can count it. Here the raw bytes are decompressed with a bound on each
step's output: memory stays at the cap whatever the compression ratio.
"""

from __future__ import annotations

import zlib

ACCEPTED_ENCODINGS = "gzip, deflate"
"""What the client advertises; any other ``Content-Encoding`` is refused."""


class BodyError(Exception):
    """The body is larger than the cap, or encoded in a way the client did not ask for."""


class BoundedBody:
    def __init__(self, content_encoding: str, *, limit: int) -> None:
        self._limit = limit
        self._body = bytearray()
        encoding = content_encoding.strip().lower()
        if encoding in ("", "identity"):
            self._inflate: zlib._Decompress | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self._inflate = zlib.decompressobj()
        else:
            raise BodyError(f"unrequested Content-Encoding {content_encoding[:40]!r}")

    def feed(self, raw: bytes) -> None:
        if self._inflate is None:
            self._append(raw)
            return
        try:
            self._append(self._inflate.decompress(raw, self._limit - len(self._body) + 1))
        except zlib.error as exc:
            raise BodyError(f"corrupt compressed body ({exc})") from None

    def finish(self) -> bytes:
        return bytes(self._body)

    def _append(self, data: bytes) -> None:
        self._body.extend(data)
        if len(self._body) > self._limit:
            raise BodyError(f"response larger than {self._limit} bytes")
