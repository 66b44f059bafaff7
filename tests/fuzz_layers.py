"""Coverage-guided fuzzing (atheris / libFuzzer) of the streaming layer reader and what reads
its record: tar headers, pax records, GNU long names and sparse maps, gzip and zstd framing,
then `merge`, `Filesystem.lookup` / `read`, `os_release` and `bot.images.inventory.inventory`.

    .venv/bin/python tests/fuzz_layers.py -runs=100000
    .venv/bin/python tests/fuzz_layers.py -max_total_time=600 DIR   # longer, corpus in DIR

An input is two option bytes (chunk sizes, which `want`, tight caps or not, the media type
given, and whether to check against one whole-blob feed: `tests.support.tarfuzz.Options`) and
a layer blob. The mutator is structure-aware (`tarfuzz.mutate`): it decompresses the blob,
changes the tar inside it where the parser decides things (header fields with the checksum
recomputed, pax records and their lengths, whole members inserted, dropped, repeated, the end
cut), and compresses it again, now and then another way; one mutation in ten is libFuzzer's own
on the raw blob, so the gzip and zstd framing is fuzzed too.

The contract (`tarfuzz.exercise`): feed/close raise nothing but `LayerError`, a failed reader
stays failed, the record keeps to its caps and equals one whole-blob read, and merging and
reading the record never raise. Anything else is a crash libFuzzer reports with its input;
`-timeout` (default here 10 s) catches a hang and `-rss_limit_mb` (default here 1024) memory
that grows without bound. The seeds (`tarfuzz.seeds()`) are written into the corpus directory
at every start (by default $TMPDIR/crowsnest-fuzz-corpus-layers, kept between runs).
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Only the bot's own code is instrumented: the libraries' coverage would only slow it down.
with atheris.instrument_imports(include=["bot"]):
    from tests.support import tarfuzz

DEFAULT_CORPUS = Path(tempfile.gettempdir()) / "crowsnest-fuzz-corpus-layers"
DEFAULTS = ("-timeout=10", "-rss_limit_mb=1024", "-max_len=65536", "-print_final_stats=1")


def test_one_input(data: bytes) -> None:
    tarfuzz.exercise(data)


def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
    rng = random.Random(seed)

    def libfuzzer(blob: bytes) -> bytes:
        out: bytes = atheris.Mutate(blob, min(max_size, max(2 * len(blob), len(blob) + 64)))
        return out

    return tarfuzz.mutate(data, rng, max_size, libfuzzer)


def main() -> None:
    args = sys.argv[:]
    for default in DEFAULTS:
        if not any(a.startswith(default.partition("=")[0] + "=") for a in args[1:]):
            args.insert(1, default)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(DEFAULT_CORPUS))
    for directory in (Path(a) for a in args[1:] if not a.startswith("-")):
        directory.mkdir(parents=True, exist_ok=True)
        for name, seed in tarfuzz.seeds().items():
            (directory / f"seed-{name}").write_bytes(seed)
    atheris.Setup(args, test_one_input, custom_mutator=custom_mutator)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
