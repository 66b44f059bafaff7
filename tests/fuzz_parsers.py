"""Coverage-guided fuzzing (atheris / libFuzzer) of the registry webhook parsers and Falco's.

    .venv/bin/python tests/fuzz_parsers.py -runs=20000
    .venv/bin/python tests/fuzz_parsers.py -max_total_time=600 DIR   # longer, corpus in DIR

The first input byte picks the parser (every registry kind, then Falco) and, for GHCR, the
`X-GitHub-Event`; the rest is the body. A parser may return or raise its documented
`MalformedPayload`; anything else is a crash that libFuzzer reports with the input that caused
it. The captured payloads in tests/fixtures seed the corpus (by default
$TMPDIR/crowsnest-fuzz-corpus, kept between runs), so the search starts from real shapes.
"""

from __future__ import annotations

import base64
import json
import sys
import tempfile
from pathlib import Path

import atheris

# Only the bot's own code is instrumented: the libraries' coverage would only slow it down.
with atheris.instrument_imports(include=["bot", "handlers"]):
    from bot.events import DomainEvent, RuntimeAlert
    from handlers import falco
    from handlers.registry import (
        artifact_registry,
        distribution,
        dockerhub,
        ecr,
        ghcr,
        harbor,
        quay,
    )
    from handlers.registry.errors import MalformedPayload

FIXTURES = Path(__file__).resolve().parent / "fixtures"
PARSERS = [
    ("distribution", distribution.parse),
    ("dockerhub", dockerhub.parse),
    ("ghcr", ghcr.parse),
    ("harbor", harbor.parse),
    ("quay", quay.parse),
    ("ecr", ecr.parse),
    ("artifact-registry", artifact_registry.parse),
]
GHCR_EVENTS = ["package", "registry_package", "ping", "push"]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    which = selector % (len(PARSERS) + 1)
    if which == len(PARSERS):
        try:
            alert = falco.parse({}, body)
        except falco.MalformedPayload:
            return
        assert isinstance(alert, RuntimeAlert)
        return
    _kind, parse = PARSERS[which]
    headers = {
        "X-GitHub-Event": GHCR_EVENTS[(selector // 8) % len(GHCR_EVENTS)],
        "X-GitHub-Delivery": "fuzz-delivery",
    }
    try:
        parsed = parse(headers, body, "fuzz")
    except MalformedPayload:
        return
    assert parsed.ignored >= 0
    assert all(isinstance(e, DomainEvent) for e in parsed.events)


def _seed_corpus(directory: Path) -> None:
    """Write the captured samples, each prefixed with its parser's selector byte."""
    directory.mkdir(parents=True, exist_ok=True)
    kinds = [kind for kind, _parse in PARSERS]
    for n, kind in enumerate([*kinds, "falco"]):
        folder = FIXTURES / ("falco" if kind == "falco" else f"registry/{kind}")
        for sample in sorted(folder.glob("*.json")):
            if sample.name.endswith(".headers.json"):
                continue
            body = sample.read_bytes()
            if kind == "artifact-registry" and sample.name.startswith("message-data__"):
                message = {"data": base64.b64encode(body).decode(), "messageId": "m"}
                body = json.dumps({"message": message}).encode()
            selector = n
            if kind == "ghcr":
                event = json.loads(sample.with_name(sample.name[:-5] + ".headers.json").read_text())
                selector = n + 8 * GHCR_EVENTS.index(event.get("X-GitHub-Event", "ping"))
            (directory / f"{kind}-{sample.stem}").write_bytes(bytes([selector]) + body)


#: Reused between runs (libFuzzer adds every input that finds new coverage), seeded each run.
DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "crowsnest-fuzz-corpus"


def main() -> None:
    args = sys.argv[:]
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(DEFAULT_CORPUS))
    for directory in (a for a in args[1:] if not a.startswith("-")):
        _seed_corpus(Path(directory))
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
