"""Prometheus metrics, one registry per runtime so tests and replicas never share counters."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        self.events_rejected = Counter(
            "crowsnest_events_rejected",
            "Requests refused at intake",
            ["source", "status"],
            registry=r,
        )
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
