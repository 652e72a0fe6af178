"""A real HTTP receiver on loopback for alert sinks: records what arrives; can be down."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw)


@dataclass
class Receiver:
    received: list[Received] = field(default_factory=list)
    mode: str = "up"
    """``up`` answers 200; ``down`` answers 503; ``hang`` holds the request for a minute."""

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.mode == "hang":
                    time.sleep(60)
                if receiver.mode == "down":
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append(Received(self.path, dict(self.headers), raw))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def events(self) -> list[str]:
        return [r.body["status"] for r in self.received if r.path == "/hook"]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
