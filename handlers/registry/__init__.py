"""Registry webhooks: one module per registry kind, and the intake view that dispatches to them."""

from handlers.registry.intake import mount

__all__ = ["mount"]
