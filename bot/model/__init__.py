"""The vocabulary every package speaks: domain events, findings, installed packages.

Pure data types, importing nothing else of `bot`, so that any package may use them
without an import cycle."""
