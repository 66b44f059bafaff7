"""The edges: everything that turns outside input into calls on the core.

This is the only module that names the concrete handler modules.
"""

from collections.abc import Sequence

from bot.core import Edge
from handlers import falco, http, k8s, registry, slack

EDGES: Sequence[Edge] = (http, registry, falco, k8s, slack)
