"""An installed package, as the inventory finds it and the vulnerability matcher reads it."""

from bot.vulns.match import Package

__all__ = ["Package"]
