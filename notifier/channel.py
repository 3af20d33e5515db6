"""What a channel is: one ``notify(message)`` that raises :class:`TransportError` saying what a retry can do.

Retries, backoff, holds, idempotency and dead letters live in :mod:`notifier.dispatch`, not here: a
transport makes exactly one attempt and classifies its failure (the table is in docs/notifications.md):

- **permanent**: this message will never succeed (SMTP 5xx to RCPT or DATA: an unknown recipient, a
  refused text; HTTP 4xx from the SMS gateway for this message, any 4xx or redirect from a
  customer's webhook). Only these are dead-lettered at once.
- **destination**: the receiver fails for every message now (connection refused or timed out, DNS,
  TLS, SMTP 421 or a refused greeting/HELO/sender/login, HTTP 5xx/408/425/429 and, from our own
  SMS gateway, 401/403/407 and redirects): the channel is held and probed with backoff
  instead of every queued message trying on its own.
- **config**: a destination failure that looks like our configuration (login, TLS, sender, the
  gateway's credentials or URL): retried the same way, logged as an error for the operator.
- anything else (SMTP 4xx to RCPT or DATA, e.g. greylisting or a full mailbox): retried per message.

Transports are shared by the sending threads, so per-connection state is thread-local.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from notifier.messages import Message

log = logging.getLogger("notifier.transports")


class TransportError(Exception):
    """One attempt failed; the flags say what a retry can do (see the module docstring)."""

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool = False,
        destination: bool = False,
        config: bool = False,
        retry_after: float = 0.0,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent
        self.destination = destination or config
        self.config = config
        self.retry_after = retry_after  # seconds the receiver asked us to wait (HTTP Retry-After), 0 = none


class Transport(ABC):
    channel = ""
    timeout = 10.0  # seconds one attempt may take at most (bounds how long a probe of a held channel runs)

    @abstractmethod
    def notify(self, message: Message) -> None:
        """Deliver one message or raise :class:`TransportError`."""

    def destination(self, message: Message) -> str:
        """Which receiver ``message`` goes to: a failing one is held as a whole (one SMTP relay, one SMS
        gateway; a webhook's origin)."""
        return self.channel

    def close(self) -> None:  # noqa: B027 - optional hook: most transports hold nothing to close
        """Drop pooled connections (called on shutdown)."""


class LogTransport(Transport):
    """Stands in for a channel that is not configured, so the stack runs without SMTP or a gateway."""

    def __init__(self, channel: str) -> None:
        self.channel = channel

    def notify(self, message: Message) -> None:
        log.info(
            "notification (channel not configured, logged only)",
            extra={
                "channel": message.channel,
                "recipient": message.recipient,
                "account": message.fqdn,
                "event_type": message.event_type,
                "event_id": message.event_id,
                "subject": message.subject,
                "text": message.text,
            },
        )
