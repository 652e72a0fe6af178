"""The configured sinks and how each one sends. Secrets come from the environment:
``ALERT_WEBHOOK_SECRET`` signs the webhook, ``ALERT_CHAT_URLS`` holds Apprise URLs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from controller.alerting import payloads
from controller.config import AlertingSettings
from desired_state.alerts import Delivery


class SinkError(Exception):
    """A sink refused or did not answer; the delivery is retried later."""


@dataclass(frozen=True)
class Sinks:
    webhook_url: str = ""
    webhook_secret: str = ""
    alertmanager_url: str = ""
    chat_urls: tuple[str, ...] = ()
    timeout_seconds: float = 5.0
    transport: httpx.AsyncBaseTransport | None = field(default=None, compare=False)

    @classmethod
    def from_settings(
        cls, settings: AlertingSettings, environ: Mapping[str, str] | None = None
    ) -> Sinks:
        env = os.environ if environ is None else environ
        chat = tuple(u.strip() for u in env.get("ALERT_CHAT_URLS", "").split(",") if u.strip())
        return cls(
            webhook_url=settings.webhook_url,
            webhook_secret=env.get("ALERT_WEBHOOK_SECRET", ""),
            alertmanager_url=settings.alertmanager_url,
            chat_urls=chat,
            timeout_seconds=settings.delivery_timeout_seconds,
        )

    @property
    def names(self) -> list[str]:
        configured = {
            "webhook": self.webhook_url,
            "alertmanager": self.alertmanager_url,
            "chat": self.chat_urls,
        }
        return [name for name, value in configured.items() if value]

    async def send(self, delivery: Delivery) -> None:
        if delivery.sink == "webhook":
            body = payloads.encode(payloads.webhook_body(delivery))
            headers = {"Content-Type": "application/json"}
            if self.webhook_secret:
                headers["X-Signature-256"] = payloads.signature(body, self.webhook_secret)
            await self._post(self.webhook_url, content=body, headers=headers)
        elif delivery.sink == "alertmanager":
            url = self.alertmanager_url.rstrip("/") + "/api/v2/alerts"
            await self._post(
                url,
                content=payloads.encode(payloads.alertmanager_body(delivery)),
                headers={"Content-Type": "application/json"},
            )
        elif delivery.sink == "chat":
            # Imported here: apprise loads every plugin it has at import, which only a
            # daemon delivering to a chat sink needs (tests/unit/test_startup_imports.py).
            import apprise

            notifier = apprise.Apprise()
            for url in self.chat_urls:
                notifier.add(url)
            sent = await notifier.async_notify(
                body=payloads.chat_text(delivery), title=payloads.chat_title(delivery)
            )
            if not sent:
                raise SinkError("chat: at least one Apprise target refused the notification")
        else:
            raise SinkError(f"sink {delivery.sink!r} is not configured any more")

    async def _post(self, url: str, *, content: bytes, headers: dict[str, str]) -> None:
        if not url:
            raise SinkError("sink URL is not configured any more")
        try:
            async with httpx.AsyncClient(
                timeout=self.timeout_seconds, transport=self.transport, follow_redirects=False
            ) as client:
                response = await client.post(url, content=content, headers=headers)
        except httpx.HTTPError as exc:
            raise SinkError(f"{type(exc).__name__} posting to the sink") from None
        if response.status_code >= 300:
            raise SinkError(f"the sink answered {response.status_code}")
