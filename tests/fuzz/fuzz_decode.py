"""Coverage-guided fuzzing of the decode path with atheris (libFuzzer).  Run by hand; pytest does not.

    .venv/bin/pip install atheris
    mkdir -p /tmp/fuzz-corpus
    .venv/bin/python tests/fuzz/fuzz_decode.py /tmp/fuzz-corpus tests/hostile -max_total_time=600

libFuzzer writes new inputs into the FIRST folder, so keep a scratch folder first and the committed
corpus (``tests/hostile``) second, as seeds.  An input that breaks the contract (anything but a
well-formed result or a ``MediaError``) is saved as ``crash-<sha1>`` in the working directory;
replay it with ``python tests/fuzz/fuzz_decode.py crash-<sha1>``.  Decoders in native code that
crash outright (SIGSEGV) are reported by libFuzzer the same way.
"""

from __future__ import annotations

import re
import sys

import atheris

with atheris.instrument_imports():
    from childshield import HashOptions, MediaError, hash_bytes

# The last input byte picks the options, so the fuzzer explores them too.
OPTIONS = [
    HashOptions(max_pixels=4_000_000),
    HashOptions(max_pixels=4_000_000, frames=True, max_frames=16),
    HashOptions(max_pixels=4_000_000, exact=True),
    HashOptions(max_pixels=4_000_000, dihedral=True),
]
HEX64 = re.compile("[0-9a-f]{64}")


def test_one_input(data: bytes) -> None:
    options = OPTIONS[data[-1] % len(OPTIONS)] if data else OPTIONS[0]
    try:
        result = hash_bytes(data, options)
    except MediaError as exc:
        message = str(exc)
        if not message or "\n" in message or len(message) > 300:
            raise AssertionError(f"bad error message: {message!r}") from None
        return
    if result.width * result.height > options.max_pixels:
        raise AssertionError(f"over the pixel limit: {result.width}x{result.height}")
    for frame in result.frames:
        if not 0 <= frame.pdq_quality <= 100:
            raise AssertionError(f"quality {frame.pdq_quality}")
        if frame.pdq is not None and not HEX64.fullmatch(frame.pdq):
            raise AssertionError(f"pdq {frame.pdq!r}")


def main() -> None:
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
