"""Prometheus metrics, one registry per runtime so tests and replicas never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Why a request was refused, by the status it was answered with. A reason the status does not
#: tell (`unsupported`: a valid delivery of an event type the bot does not know, answered 2xx
#: so that the source does not retry it) is named by the caller.
REJECTION_REASONS = {
    "400": "malformed",
    "401": "unauthorized",
    "404": "unknown-source",
    "413": "too-large",
    "415": "content-type",
    "503": "unavailable",
}


class Rejections:
    """`crowsnest_events_rejected_total{source, status, reason}`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.counter = Counter(
            "crowsnest_events_rejected",
            "Requests refused at intake, and events set aside as unsupported",
            ["source", "status", "reason"],
            registry=registry,
        )

    def labels(self, source: str, status: str, reason: str | None = None) -> Counter:
        """The counter for one source and answer; the reason defaults to the status's."""
        return self.counter.labels(source, status, reason or REJECTION_REASONS.get(status, "other"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_received = Counter(
            "crowsnest_events_received", "Events accepted into the inbox", ["source"], registry=r
        )
        self.events_duplicate = Counter(
            "crowsnest_events_duplicate",
            "Redeliveries already in the inbox",
            ["source"],
            registry=r,
        )
        self.events_ignored = Counter(
            "crowsnest_events_ignored",
            "Valid events the bot has nothing to do with (pulls, blob pushes)",
            ["source"],
            registry=r,
        )
        self.events_rejected = Rejections(r)
        self.events_processed = Counter(
            "crowsnest_events_processed", "Events processed", ["source"], registry=r
        )
        self.events_retried = Counter(
            "crowsnest_events_retried",
            "Processing attempts that will be retried",
            ["source"],
            registry=r,
        )
        self.events_failed = Counter(
            "crowsnest_events_failed", "Events parked as failed", ["source"], registry=r
        )
        self.processing_seconds = Histogram(
            "crowsnest_event_processing_seconds",
            "Time to process one event",
            ["source"],
            registry=r,
        )
        self.inbox_events = Gauge(
            "crowsnest_inbox_events", "Inbox rows by status", ["status"], registry=r
        )
        self.slack_calls = Counter(
            "crowsnest_slack_calls", "Slack Web API calls", ["method", "status"], registry=r
        )
        self.slack_pending = Gauge(
            "crowsnest_slack_messages_pending", "Messages waiting to be delivered", registry=r
        )
