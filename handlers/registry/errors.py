"""Why an intake request is refused; the intake view maps each to its HTTP status."""


class Unauthorized(Exception):
    """401: missing or wrong secret or signature."""


class MalformedPayload(Exception):
    """400: not the payload this source sends."""
