"""Coverage-guided fuzzing (atheris / libFuzzer) of the registry webhook parsers, Falco's and
the AdmissionReview parser.

    .venv/bin/python tests/fuzz_parsers.py -runs=20000
    .venv/bin/python tests/fuzz_parsers.py -max_total_time=600 DIR   # longer, corpus in DIR
    CROWSNEST_FUZZ_ONLY=admission .venv/bin/python tests/fuzz_parsers.py -runs=100000

The first input byte picks the parser (every registry kind, then the OTHERS: Falco, admission)
and, for GHCR, the `X-GitHub-Event`; the rest is the body. A parser may return or raise its
documented `MalformedPayload`; the admission parser never raises, and its every outcome must
make an answer (and a review's workload a policy verdict). Anything else is a crash that
libFuzzer reports with the input that caused it. With $CROWSNEST_FUZZ_ONLY naming one target
(a registry kind, `falco` or `admission`) every run goes to it, seeded with its samples only. The captured payloads in tests/fixtures seed the corpus (by default
$TMPDIR/crowsnest-fuzz-corpus, kept between runs), so the search starts from real shapes.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import atheris

# Only the bot's own code is instrumented: the libraries' coverage would only slow it down.
with atheris.instrument_imports(include=["bot", "handlers"]):
    from bot.cluster.admission import Verdict
    from bot.cluster.policy import PolicyConfig, evaluate
    from bot.model.events import DomainEvent, RuntimeAlert, WorkloadSeen
    from handlers import falco
    from handlers.k8s import admission
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
RESTRICTED = PolicyConfig(default_level="restricted")


def fuzz_falco(body: bytes) -> None:
    try:
        alert = falco.parse({}, body)
    except falco.MalformedPayload:
        return
    assert isinstance(alert, RuntimeAlert)


def fuzz_admission(body: bytes) -> None:
    """parse_review never raises; each outcome becomes an answer that serialises."""
    parsed = admission.parse_review(body, "fuzz")
    if isinstance(parsed, admission.Unanswerable):
        assert parsed.message
        return
    if isinstance(parsed, admission.Unreviewable):
        answer = admission.unreviewable(parsed, "enforce")
        assert answer["response"]["allowed"] is False
    else:
        answer = admission.response(parsed.uid, Verdict(True))
        if parsed.workload is not None:
            assert isinstance(parsed.event, WorkloadSeen)
            evaluate(parsed.workload, RESTRICTED)
    assert answer["response"]["uid"] == parsed.uid
    json.dumps(answer)


#: The targets after the registry parsers, in selector order.
OTHERS = [("falco", fuzz_falco), ("admission", fuzz_admission)]
#: The selector byte modulo this picks the target; divided by it, GHCR's event.
TARGETS = len(PARSERS) + len(OTHERS)
NAMES = [name for name, _target in [*PARSERS, *OTHERS]]
ONLY = os.environ.get("CROWSNEST_FUZZ_ONLY") or None
if ONLY is not None and ONLY not in NAMES:
    sys.exit(f"CROWSNEST_FUZZ_ONLY={ONLY}: not one of {', '.join(NAMES)}")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    selector, body = data[0], data[1:]
    which = NAMES.index(ONLY) if ONLY is not None else selector % TARGETS
    if which >= len(PARSERS):
        OTHERS[which - len(PARSERS)][1](body)
        return
    _kind, parse = PARSERS[which]
    headers = {
        "X-GitHub-Event": GHCR_EVENTS[(selector // TARGETS) % len(GHCR_EVENTS)],
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
    folders = {"falco": "falco", "admission": "kubernetes"}
    for n, kind in enumerate([*kinds, *(name for name, _fuzz in OTHERS)]):
        if ONLY is not None and kind != ONLY:
            continue
        folder = FIXTURES / folders.get(kind, f"registry/{kind}")
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
                selector = n + TARGETS * GHCR_EVENTS.index(event.get("X-GitHub-Event", "ping"))
            (directory / f"{kind}-{sample.stem}").write_bytes(bytes([selector]) + body)
            if kind == "admission":
                for variant, doc in _admission_variants(json.loads(body)).items():
                    data = json.dumps(doc).encode()
                    (directory / f"{kind}-{sample.stem}-{variant}").write_bytes(bytes([n]) + data)


def _admission_variants(review: dict[str, Any]) -> dict[str, Any]:
    """Shapes the captured reviews lack: a `kubectl debug` (a Pod with ephemeralContainers,
    through the `pods/ephemeralcontainers` subresource) and another apiVersion."""
    request = review.get("request") or {}
    template = (((request.get("object") or {}).get("spec") or {}).get("template")) or {}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "a"}}
    pod["spec"] = {
        **(template.get("spec") or {}),
        "ephemeralContainers": [
            {"name": "debugger", "image": "busybox", "securityContext": {"privileged": True}}
        ],
    }
    debug = {
        **request,
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "subResource": "ephemeralcontainers",
        "operation": "UPDATE",
        "object": pod,
    }
    return {
        "ephemeral": {**review, "request": debug},
        "v1beta1": {**review, "apiVersion": "admission.k8s.io/v1beta1"},
    }


#: Reused between runs (libFuzzer adds every input that finds new coverage), seeded each run.
DEFAULT_CORPUS = Path(tempfile.gettempdir()) / (
    "crowsnest-fuzz-corpus" + (f"-{ONLY}" if ONLY else "")
)


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
