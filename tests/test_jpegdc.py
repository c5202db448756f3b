"""The DC-only JPEG decoder gives exactly libjpeg's 1/8-scale luma, or refuses; it never crashes."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from childshield.testing.corpus import generated_photo

decode_module = importlib.import_module("childshield.media.decode")  # the module, not the function
jpegdc = pytest.importorskip("childshield.media._jpegdc", reason="C extension not built")


def libjpeg_eighth(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("L", (w // 8, h // 8))
        im.load()
        assert im.size == (-(-w // 8), -(-h // 8))
        return np.asarray(im)


def ours(data: bytes) -> np.ndarray:
    raw, _, _, cols, rows = jpegdc.dc_luma(data)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, cols)


def jpeg(pixels: np.ndarray, **options: object) -> bytes:
    old = ImageFile.MAXBLOCK
    ImageFile.MAXBLOCK = 1 << 24  # optimize=True needs the whole image in one buffer
    try:
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG", **options)
        return buf.getvalue()
    finally:
        ImageFile.MAXBLOCK = old


BASE = generated_photo(31, 520, 390)


def variants() -> list[tuple[str, bytes]]:
    out = []
    for sub in (0, 1, 2):
        for quality in (30, 90, 100):
            for w, h in [(520, 390), (523, 389), (17, 9), (8, 8)]:
                img = np.asarray(Image.fromarray(BASE).resize((w, h)))
                out.append((f"s{sub} q{quality} {w}x{h}", jpeg(img, quality=quality, subsampling=sub)))
    out.append(("optimized tables", jpeg(BASE, quality=85, optimize=True)))
    out.append(("restart every block", jpeg(BASE, quality=85, restart_marker_blocks=1)))
    out.append(("restart every row", jpeg(BASE, quality=85, restart_marker_rows=1)))
    out.append(("restart every 7 blocks", jpeg(BASE, quality=85, restart_marker_blocks=7, subsampling=2)))
    out.append(("grayscale", jpeg(BASE[:, :, 0], quality=90)))
    out.append(("with EXIF", jpeg(BASE, quality=90, exif=Image.Exif().tobytes())))
    return out


@pytest.mark.parametrize(("name", "data"), variants(), ids=[n for n, _ in variants()])
def test_identical_to_libjpeg(name: str, data: bytes) -> None:
    assert np.array_equal(ours(data), libjpeg_eighth(data)), name


@pytest.mark.parametrize(
    "options",
    [{"progressive": True}, {}],
    ids=["progressive", "cmyk"],
)
def test_refuses_what_it_does_not_decode(options: dict) -> None:
    if options:
        data = jpeg(BASE, quality=90, **options)
    else:
        buf = io.BytesIO()
        Image.fromarray(BASE).convert("CMYK").save(buf, format="JPEG")
        data = buf.getvalue()
    with pytest.raises(ValueError):
        jpegdc.dc_luma(data)


def test_refuses_truncated_data() -> None:
    data = jpeg(BASE, quality=90)
    for cut in (len(data) // 3, len(data) - 40, 300):
        with pytest.raises(ValueError):
            jpegdc.dc_luma(data[:cut])
    # Only the end-of-image marker missing: Pillow calls that truncated, and so do we.
    with pytest.raises(ValueError):
        jpegdc.dc_luma(data[:-2])


def test_used_by_decode_for_large_jpegs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path and the Pillow path give the same picture, so the same hash."""
    big = np.asarray(Image.fromarray(BASE).resize((3200, 2400)))
    data = jpeg(big, quality=88)
    fast = decode_module.decode(data, choose_factor=lambda w, h: 8).pictures[0]
    monkeypatch.setattr(decode_module, "_jpegdc", None)
    slow = decode_module.decode(data, choose_factor=lambda w, h: 8).pictures[0]
    assert fast.factor == slow.factor == 8
    assert np.array_equal(fast.pixels, slow.pixels)


SEEDS = [data for _, data in variants()[::5]] + [jpeg(BASE, quality=85, restart_marker_blocks=3)]


@settings(max_examples=400, print_blob=False, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.sampled_from(SEEDS),
    edits=st.lists(
        st.tuples(st.floats(0, 1), st.integers(0, 255), st.sampled_from(["set", "insert", "delete", "cut"])),
        min_size=1,
        max_size=6,
    ),
)
def test_fuzz_differential(seed: bytes, edits: list[tuple[float, int, str]]) -> None:
    """Mutated JPEGs: either refused, or decoded exactly as libjpeg decodes them."""
    data = bytearray(seed)
    for where, value, kind in edits:
        i = int(where * (len(data) - 1))
        if kind == "set":
            data[i] = value
        elif kind == "insert":
            data.insert(i, value)
        elif kind == "delete" and len(data) > 4:
            del data[i]
        elif kind == "cut":
            data = data[: max(4, i)]
    blob = bytes(data)
    try:
        got = ours(blob)
    except ValueError:
        return
    try:
        want = libjpeg_eighth(blob)
    except Exception:
        pytest.fail("decoded a file that libjpeg rejects")
    assert np.array_equal(got, want)


def _crafted() -> list[tuple[str, bytes]]:
    import struct

    from jpeg_writer import make, seg

    dqt2 = seg(0xDB, bytes([0, 50] + [1] * 63))
    return [
        ("plain gray", make(64, 48)),
        ("ycc 2x2", make(100, 70, comps=((1, 2, 2, 0), (2, 1, 1, 0), (3, 1, 1, 0)))),
        ("restart in order", make(64, 48, ri=3)),
        ("restart markers all RST0", make(64, 48, ri=3, rstnum=lambda n: 0)),
        ("restart markers shifted", make(64, 48, ri=3, rstnum=lambda n: (n + 3) % 8)),
        ("16-bit DC step 40000", make(64, 48, q=(40000,), q16=True)),
        ("16-bit DC step 32768", make(64, 48, q=(32768,), q16=True, dcfun=lambda c, x, y: -1)),
        ("16 luma blocks per MCU", make(64, 64, comps=((1, 4, 4, 0), (2, 1, 1, 0), (3, 1, 1, 0)))),
        ("12 blocks per MCU", make(64, 64, comps=((1, 2, 2, 0), (2, 2, 2, 0), (3, 2, 2, 0)))),
        ("SOF longer than its fields", make(64, 48, sof_extra=b"\0\0\0")),
        ("SOS longer than its fields", make(64, 48, sos_extra=b"\0")),
        ("DRI longer than its fields", make(64, 48, ri=3, dri_extra=b"\0\0")),
        ("FF 00 junk before a DQT", make(64, 48, mid=b"\xff\x00" + struct.pack(">H", len(dqt2) + 2) + dqt2)),
        ("junk right after SOI (found by hypothesis)", b"\xff\xd8\x00" + jpeg(BASE, quality=85)[3:]),
        ("TEM marker, refused by Pillow (hypothesis)", b"\xff\xd8\xff\x01" + jpeg(BASE, quality=85)[4:]),
        (
            "all-ones Huffman code",
            make(64, 48, dc_bits=[0, 4] + [0] * 14, dc_vals=[0, 1, 2, 3], dcfun=lambda c, x, y: (x + y) % 3),
        ),
        (
            "duplicate component ids",
            make(
                64,
                48,
                comps=((1, 1, 1, 0), (1, 1, 1, 0), (3, 1, 1, 0)),
                dcfun=lambda c, x, y: [10, -50, 0][c],
            ),
        ),
    ]


@pytest.mark.parametrize(("name", "data"), _crafted(), ids=[n for n, _ in _crafted()])
def test_crafted_edge_cases_match_libjpeg_or_are_refused(name: str, data: bytes) -> None:
    """Cases a code review found (restart numbering, FF 00 junk, duplicate ids, MCU size, lengths...)."""
    try:
        got = ours(data)
    except ValueError:
        return
    try:
        want = libjpeg_eighth(data)
    except Exception:
        pytest.fail(f"{name}: accepted a file that libjpeg rejects")
    assert np.array_equal(got, want), name


def test_data_that_runs_out_is_refused_without_decoding_padding() -> None:
    """98 MP declared, 4 bytes of data: refused at the first block that reads past the data."""
    import struct

    from jpeg_writer import seg

    data = bytearray(b"\xff\xd8") + seg(0xDB, bytes([0, 1] + [1] * 63))
    data += seg(0xC0, bytes([8]) + struct.pack(">HH", 1500, 65535) + bytes([1, 1, 0x11, 0]))
    data += seg(0xC4, bytes([0x00] + [0] * 15 + [1, 11]))  # DC: one 16-bit code, category 11
    data += seg(0xC4, bytes([0x10] + [0] * 15 + [1, 0x0F]))  # AC: one 16-bit code, size 15
    data += seg(0xDA, bytes([1, 1, 0x00, 0, 63, 0])) + b"\x00" * 4 + b"\xff\xd9"
    with pytest.raises(ValueError, match="truncated"):
        jpegdc.dc_luma(bytes(data))
