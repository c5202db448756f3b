"""Video: sampling (1 fps and scene changes) under limits, the vPDQ text format, and matching of edited
copies, clips and pictures shown in videos, with their times, on SQLite and PostgreSQL.  Every video
here is made of generated pictures and encoded by PyAV."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from childshield.banks.entries import add_outcomes, add_video_signal, video_signal
from childshield.banks.service import create_bank, update_bank
from childshield.hashing.result import HashOutcome
from childshield.hashing.service import HashOptions, hash_bytes
from childshield.matching.matcher import Matcher
from childshield.matching.scan import ScanResult, scan_bytes
from childshield.media.errors import CorruptImage, ImageTooLarge, MediaError, NotAnImage
from childshield.media.video import Sampling, VideoInfo, VideoLimits, is_video, sample_frames
from childshield.signals import vpdq
from childshield.store.db import Database
from childshield.testing.corpus import encode
from childshield.testing.video import clip, crop, encode_video, letterbox, retimed, scene

KNOWN = [scene(s) for s in range(10, 16)]  # 6 scenes, 2 s each: a 12 s known video
OTHER = [scene(s) for s in range(50, 62)]
PHOTO = scene(99)


@pytest.fixture(scope="module")
def known_video() -> bytes:
    return encode_video(clip(KNOWN, 2.0))


def banked(db: Database, known_video: bytes) -> Matcher:
    create_bank(db, "known")
    video = hash_bytes(known_video, HashOptions(bank_variants=True))
    photo = hash_bytes(encode(PHOTO, "PNG"), HashOptions(bank_variants=True))
    report = add_outcomes(
        db, "known", [HashOutcome("known.mp4", result=video), HashOutcome("p.png", result=photo)]
    )
    assert report.video_frames == 12 * 5  # 12 frames, each with its 4 centred crops
    return Matcher.load(db, index_dir=False)


def scan(matcher: Matcher, data: bytes) -> ScanResult:
    return scan_bytes(matcher, data)


def test_frames_are_sampled_once_a_second_and_at_scene_changes() -> None:
    cuts = encode_video(clip(OTHER[:4], 2.5))  # cuts at 2.5, 5.0, 7.5 s
    info = VideoInfo()
    regular = list(sample_frames(cuts, Sampling(rate=1.0, scene_threshold=2.0), info=info))
    assert [round(f.timestamp, 2) for f in regular] == [float(t) for t in range(10)]
    assert info.duration == pytest.approx(10.0) and info.codec == "h264" and info.decoded == 100
    scenes = list(sample_frames(cuts, Sampling(rate=0.0)))  # the first frame, then cuts only
    assert [round(f.timestamp, 2) for f in scenes] == [0.0, 2.5, 5.0, 7.5]
    assert [f.scene_change for f in scenes] == [False, True, True, True]
    both = list(sample_frames(cuts, Sampling(rate=1.0)))
    assert {2.5, 7.5} <= {round(f.timestamp, 2) for f in both}


@pytest.mark.parametrize(
    ("codec", "container"), [("libx264", "mp4"), ("libx264", "mov"), ("libvpx-vp9", "webm"),
                             ("libx264", "matroska"), ("mpeg4", "avi")],
)  # fmt: skip
def test_containers_and_codecs(codec: str, container: str) -> None:
    data = encode_video(clip(KNOWN[:2], 2.0), codec=codec, container=container)
    assert is_video(data[:512])
    result = hash_bytes(data)
    assert result.is_video and result.frame_count >= 2 and result.duration == pytest.approx(4.0, abs=0.3)
    assert [f.timestamp for f in result.frames][:2] == [0.0, 1.0] or result.frames[0].timestamp == 0.0


def test_images_are_not_taken_for_videos() -> None:
    for data in (encode(PHOTO, "PNG"), encode(PHOTO, "JPEG"), b"\x00\x00\x00\x18ftypheic" + b"\x00" * 500):
        assert not is_video(data[:512])


def test_hostile_and_oversized_videos_get_clear_errors(known_video: bytes) -> None:
    with pytest.raises(ImageTooLarge):
        list(sample_frames(known_video, limits=VideoLimits(max_pixels=320 * 240 - 1)))
    with pytest.raises(MediaError):
        hash_bytes(b"\x1a\x45\xdf\xa3" + b"\x00" * 2000)  # a Matroska header and nothing else
    with pytest.raises((NotAnImage, CorruptImage)):
        list(sample_frames(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 8))
    truncated = known_video[: len(known_video) // 2]
    try:
        result = hash_bytes(truncated)
    except MediaError as exc:  # cut before the index (moov at the end): refused, clearly
        assert str(exc)
    else:  # or what could be decoded was hashed, and said so if decoding stopped early
        assert result.frame_count >= 1


def test_limits_keep_what_came_before_them(known_video: bytes) -> None:
    """A limit stops the work but never hides the frames before it (a long tail cannot hide a match)."""
    info = VideoInfo()
    frames = list(sample_frames(known_video, limits=VideoLimits(max_seconds=5), info=info))
    assert [f.timestamp for f in frames] == [0, 1, 2, 3, 4, 5] and "limit of 5 s" in info.note
    short = hash_bytes(known_video, HashOptions(video_limits=VideoLimits(max_samples=3)))
    assert short.frame_count == 3 and "frames hashed" in short.note


def test_damaged_packets_are_skipped_not_the_rest_of_the_video() -> None:
    import av

    data = encode_video(clip(KNOWN, 1.0), codec="mjpeg", container="matroska")
    out = io.BytesIO()
    with av.open(io.BytesIO(data)) as source, av.open(out, "w", format="matroska") as target:
        stream = source.streams.video[0]
        copy = target.add_stream_from_template(stream)
        for n, packet in enumerate(source.demux(stream)):
            if packet.dts is None:
                continue
            if n == 15:  # one packet of junk in the middle
                packet = av.Packet(bytes(range(256)) * 8)
                packet.pts = packet.dts = n * 1000 // 10
                packet.time_base = stream.time_base
            packet.stream = copy
            target.mux(packet)
    result = hash_bytes(out.getvalue())
    assert result.frame_count == 6 and "damaged packets skipped" in result.note  # every scene still hashed


def test_timestamps_that_jump_back_keep_sampling(known_video: bytes) -> None:
    import av

    def as_ts(data: bytes) -> bytes:
        out = io.BytesIO()
        with av.open(io.BytesIO(data)) as source, av.open(out, "w", format="mpegts") as target:
            stream = source.streams.video[0]
            copy = target.add_stream_from_template(stream)
            for packet in source.demux(stream):
                if packet.dts is not None:
                    packet.stream = copy
                    target.mux(packet)
        return out.getvalue()

    joined = as_ts(encode_video(clip(OTHER[:2], 2.0))) + as_ts(known_video)  # two files, one after the other
    times = [round(f.timestamp) for f in sample_frames(joined, Sampling(scene_threshold=2.0))]
    assert len(times) >= 15 and times == sorted(times)  # the second file sampled too, time still rising


def test_a_gif_is_never_taken_for_mpeg_ts() -> None:
    head = bytearray(encode(PHOTO, "GIF"))
    for k in range(6):
        if 188 * k < len(head):
            head[188 * k] = 0x47 if k else head[0]
    assert not is_video(bytes(head[:1024]))
    assert is_video(bytes([0x47] + [0] * 187) * 6)


def test_a_flat_video_keeps_its_best_frame() -> None:
    import numpy as np

    dark = [np.full((240, 320, 3), 8, np.uint8)] * 30
    result = hash_bytes(encode_video(dark))
    assert result.frame_count == 1 and result.frames[0].pdq_quality < 50


def test_vpdq_text_round_trip_and_errors(known_video: bytes) -> None:
    result = hash_bytes(known_video)
    frames = [
        vpdq.FrameSignal(f.pdq or "", f.pdq_quality, f.timestamp or 0.0, f.index) for f in result.frames
    ]
    text = vpdq.to_text(frames)
    assert text.splitlines()[1] == f"{frames[1].number},{frames[1].quality},{frames[1].pdq},1.000"
    assert vpdq.from_text(text) == frames
    for bad, says in [
        ("1,100,abc,0.0", "64 hex digits"),
        ("1,100," + "0" * 64, "4 comma-separated"),
        ("x,100," + "0" * 64 + ",0", "must be numbers"),
        ("1,101," + "0" * 64 + ",0", "out of range"),
        ("1,100," + "0" * 64 + ",nan", "out of range"),
        ("# only a comment", "no frames"),
    ]:
        with pytest.raises(vpdq.VpdqFormatError, match=says):
            vpdq.from_text(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from("0123456789abcdef,.\n# -x"), max_size=400))
def test_any_vpdq_text_is_read_or_refused_clearly(text: str) -> None:
    try:
        frames = vpdq.from_text(text)
    except vpdq.VpdqFormatError:
        return
    assert vpdq.from_text(vpdq.to_text(frames)) == [
        vpdq.FrameSignal(f.pdq, f.quality, round(f.timestamp, 3), f.number) for f in frames
    ]


def test_prune_drops_low_quality_and_repeats() -> None:
    a, b = "0" * 64, "f" * 64
    near_a = "1" + "0" * 63  # one bit from a
    frames = [vpdq.FrameSignal(a, 90, 0), vpdq.FrameSignal(near_a, 90, 1), vpdq.FrameSignal(b, 40, 2),
              vpdq.FrameSignal(b, 90, 3), vpdq.FrameSignal(a, 90, 4)]  # fmt: skip
    assert [f.timestamp for f in vpdq.prune(frames)] == [0, 3, 4]
    assert [f.timestamp for f in vpdq.prune(frames, dedupe_distance=-1)] == [0, 1, 3, 4]


def test_edited_copies_of_a_known_video_match(db: Database, known_video: bytes) -> None:
    matcher = banked(db, known_video)
    edits = {
        "re-encoded": encode_video(clip(KNOWN, 2.0), options={"crf": "38"}),
        "resized": encode_video(clip(KNOWN, 2.0), size=(200, 150)),
        "cropped": encode_video(crop(clip(KNOWN, 2.0), 0.1)),
        "letterboxed": encode_video(letterbox(clip(KNOWN, 2.0), 40)),
        "webm at 25 fps": encode_video(
            retimed(clip(KNOWN, 2.0), 10, 25), fps=25, codec="libvpx-vp9", container="webm"
        ),
    }
    for name, data in edits.items():
        result = scan(matcher, data)
        videos = [v for v in result.video if v.kind == "video"]
        assert len(videos) == 1, name
        v = videos[0]
        assert (
            v.query_share is not None
            and v.query_share >= 80
            and v.item_share is not None
            and v.item_share >= 80
        )
        assert v.first_time == 0.0 and v.hits[0].item_time == 0.0, name
    same = scan(matcher, known_video)
    assert {v.kind for v in same.video} == {"file"} and same.matched


def test_clips_excerpts_and_pictures_in_videos_match_with_their_times(
    db: Database, known_video: bytes
) -> None:
    matcher = banked(db, known_video)
    inside = scan(matcher, encode_video(clip(OTHER[:5], 2.0) + clip(KNOWN, 2.0) + clip(OTHER[5:], 2.0)))
    (v,) = inside.video
    assert v.kind == "video" and v.first_time == pytest.approx(10.0, abs=0.5)  # where the known clip starts
    assert v.item_share == 100.0 and v.query_share is not None and v.query_share < 50
    assert [round(h.item_time or 0) for h in v.hits[:3]] == [0, 1, 2]
    excerpt = scan(matcher, encode_video(clip(KNOWN[:2], 2.0)))
    assert excerpt.video[0].query_share == 100.0 and excerpt.video[0].item_share is not None
    assert excerpt.video[0].item_share < 50  # a third of the known video: matched by the query's side
    photo = scan(matcher, encode_video(clip(OTHER[:3], 2.0) + clip([PHOTO], 1.0) + clip(OTHER[3:6], 2.0)))
    (p,) = photo.video
    assert p.kind == "image" and p.first_time == pytest.approx(6.0, abs=0.5) and p.hits[0].item_time is None
    unrelated = scan(matcher, encode_video(clip(OTHER, 2.0)))
    assert not unrelated.matched and not unrelated.near


def test_shares_below_the_policy_are_near_not_matches(db: Database, known_video: bytes) -> None:
    matcher = banked(db, known_video)
    one_scene = encode_video(clip(OTHER[:8], 2.0) + clip(KNOWN[:1], 2.0))  # 2 of the known 12 frames
    result = scan(matcher, one_scene)  # 2/12 of the known video, 2/18 of this one: under 80% both ways
    assert not result.matched and result.near and result.near[0].kind == "video"
    assert result.near[0].first_time == pytest.approx(16.0, abs=0.5)
    update_bank(db, "known", policy={"video_item_share": 15})  # a bank that wants short shared clips
    assert scan(Matcher.load(db, index_dir=False), one_scene).matched


def test_imported_vpdq_signals_match_and_export_again(db: Database, known_video: bytes) -> None:
    create_bank(db, "partner")
    result = hash_bytes(known_video)
    frames = [
        vpdq.FrameSignal(f.pdq or "", f.pdq_quality, f.timestamp or 0.0, n)
        for n, f in enumerate(result.frames)
    ]
    report = add_video_signal(db, "partner", frames, source_name="partner.vpdq", labels=["A1"])
    assert report.added == 1 and report.video_frames == len(frames)
    matcher = Matcher.load(db, index_dir=False)
    copy = scan(matcher, encode_video(clip(KNOWN, 2.0), size=(240, 180)))
    (v,) = copy.video
    assert v.kind == "video" and v.match.labels == ("A1",) and v.match.source_name == "partner.vpdq"
    exported = video_signal(db, "partner", v.match.item_id)
    assert [(f.pdq, f.timestamp) for f in exported] == [(f.pdq, f.timestamp) for f in frames]


def test_video_commands(tmp_path: Path, known_video: bytes) -> None:
    from childshield.store.db import open_database
    from cli_runner import cli_for

    db = open_database(f"sqlite:///{tmp_path / 'v.db'}")
    (tmp_path / "known.mp4").write_bytes(known_video)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "clip.mkv").write_bytes(
        encode_video(clip(OTHER[:2], 2.0) + clip(KNOWN, 2.0), container="matroska")
    )
    hashed = cli_for(db, "hash")(str(tmp_path / "known.mp4"), "--format", "vpdq")
    assert hashed.returncode == 0 and len(hashed.stdout.splitlines()) == 12  # the reference's lines only
    (tmp_path / "known.vpdq").write_text(hashed.stdout)
    bank = cli_for(db, "bank")
    assert bank("create", "known").returncode == 0
    imported = bank("import-vpdq", "known", str(tmp_path / "known.vpdq"), "--label", "A2")
    assert imported.returncode == 0 and "12 video frames" in " ".join(imported.stderr.split()), (
        imported.stderr
    )
    found = cli_for(db, "scan")(str(tmp_path / "in"), "--format", "jsonl")
    assert found.returncode == 3, found.stderr
    (row,) = [json.loads(line) for line in found.stdout.splitlines()]
    assert (
        row["kind"] == "video" and row["time"] == pytest.approx(4.0, abs=0.5) and row["item_share"] == 100.0
    )
    exported = bank("export-vpdq", "known", str(row["item_id"]))
    assert exported.returncode == 0

    def essence(text: str) -> list[tuple[str, int, float]]:
        return [(f.pdq, f.quality, f.timestamp) for f in vpdq.from_text(text)]

    assert essence(exported.stdout) == essence(hashed.stdout)
    assert bank("export-vpdq", "known", "999999").returncode == 1
    (tmp_path / "bad.vpdq").write_text("1,2,3\n")
    bad = bank("import-vpdq", "known", str(tmp_path / "bad.vpdq"))
    assert bad.returncode == 1 and "line 1" in bad.stderr
    db.close()


def test_the_api_scans_videos_and_queues_them_with_a_still(
    db: Database, tmp_path: Path, known_video: bytes
) -> None:
    from PIL import Image

    from childshield.review.preview import render
    from childshield.web.app import create_app
    from childshield.web.settings import ServiceSettings
    from review_helpers import auth, browser, people

    keys = people(db)
    app = create_app(
        ServiceSettings(database_url=db.url, refresh_seconds=0, media_key_file=str(tmp_path / "k"))
    )
    client = browser(app)
    assert client.post("/v1/banks", json={"name": "known"}, headers=auth(keys["admin"])).status_code == 201
    added = client.post("/v1/banks/known/media", content=known_video, headers=auth(keys["admin"]))
    assert added.status_code == 200, added.text
    copy = encode_video(clip(OTHER[:3], 2.0) + clip(KNOWN, 2.0), size=(256, 192))
    r = client.post("/v1/scan", content=copy, headers=auth(keys["service"]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["matched"] and body["decision"] == "review" and body["signals"]["format"] == "video/h264"
    (match,) = body["video"]["matches"]
    assert match["kind"] == "video" and match["first_time"] == pytest.approx(6.0, abs=0.5)
    assert match["item_share"] == 100.0 and body["video"]["duration"] == pytest.approx(18.0, abs=0.2)
    still = Image.open(io.BytesIO(render(copy, blur=0, reveal=True)))
    assert still.format == "JPEG" and still.size == (256, 192)
    blurred = Image.open(io.BytesIO(render(copy, blur=12, reveal=False)))
    assert blurred.mode == "L"


def test_an_allow_listed_frame_clears_itself_not_the_video(db: Database, known_video: bytes) -> None:
    from childshield.store.models import BankKind

    matcher = banked(db, known_video)
    create_bank(db, "title-cards", kind=BankKind.NEGATIVE)
    card = hash_bytes(encode(OTHER[0], "PNG"))
    add_outcomes(db, "title-cards", [HashOutcome("card.png", result=card)])
    matcher = Matcher.load(db, index_dir=False)
    both = encode_video(clip(OTHER[:1], 2.0) + clip([PHOTO], 1.0))  # an allow-listed card, then a known photo
    result = scan(matcher, both)
    assert [v.kind for v in result.video] == ["image"] and result.matched


def test_the_api_matches_every_frame_of_an_animation(db: Database, tmp_path: Path) -> None:
    from PIL import Image

    from childshield.web.app import create_app
    from childshield.web.settings import ServiceSettings
    from review_helpers import auth, bank_with, browser, people

    keys = people(db)
    app = create_app(ServiceSettings(database_url=db.url, refresh_seconds=0))
    bank_with(browser(app), keys["admin"], PHOTO)
    frames = [Image.fromarray(f) for f in (OTHER[0], OTHER[1], PHOTO, OTHER[2])]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=500, loop=0)
    r = browser(app).post("/v1/scan", content=gif.getvalue(), headers=auth(keys["service"]))
    assert r.status_code == 200 and r.json()["matched"]  # the known picture is the third frame
