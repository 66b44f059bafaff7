"""Why an intake request is refused or set aside; the intake view maps each to its answer."""


class Unauthorized(Exception):
    """401: missing or wrong secret or signature."""


class MalformedPayload(Exception):
    """400: not the payload this source sends."""


class Unsupported(MalformedPayload):
    """A well-formed delivery of an event type (or action) the provider neither handles nor
    ignores: a type the source added after this bot was written, or one it should not have been
    subscribed to. The intake view answers it with a 2xx (so the source does not retry it
    forever) and counts it as `crowsnest_events_rejected_total{reason="unsupported"}`.

    It is a MalformedPayload so that a caller that knows only that error still refuses it
    rather than failing; the intake view catches it first.
    """

    def __init__(self, message: str, events: int = 1) -> None:
        super().__init__(message)
        #: How many events of the delivery were of unsupported types.
        self.events = events
