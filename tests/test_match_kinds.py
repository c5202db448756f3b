"""Kinds of match (issue 16.1): an allow-list entry made by a review rejection clears only the kind of
match that was rejected (signal type, variant, check), and the review page's rows fold an item's signals."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from childshield.matching.allowlist import allow_listed
from childshield.matching.kinds import NOTHING, MatchKind, covers, kinds_of, parse
from childshield.matching.matcher import Match
from childshield.review.queue import rejected_kinds


def match(
    bank: str = "known",
    entry: int = 1,
    signal: str = "pdq",
    distance: int = 4,
    *,
    query_variant: str = "",
    variant: str = "",
    check: str = "",
    labels: tuple[str, ...] = (),
    negative: bool = False,
) -> Match:
    return Match(
        bank, entry, signal, "0" * 64, distance, None, "import", "list.csv", negative,
        item_id=entry, variant=variant, query_variant=query_variant, check=check, labels=labels,
    )  # fmt: skip


def allow(distance: int = 0, *labels: str, signal: str = "pdq", query_variant: str = "") -> Match:
    return match(
        "false-matches", 99, signal, distance, query_variant=query_variant, labels=labels, negative=True
    )


MIRROR = MatchKind.of("pdq", "flipx").label()


def test_a_rejected_mirror_clears_mirrored_matches_only() -> None:
    plain = match(entry=1, distance=4)
    mirrored = match(entry=2, distance=4, query_variant="flipx")
    turned = match(entry=3, distance=4, query_variant="rotate90")
    found = {(m.bank, m.entry_id): m for m in (plain, mirrored, turned)}
    standing, cleared = allow_listed(found, [allow(0, MIRROR)])
    assert set(cleared) == {("known", 2)} and set(standing) == {("known", 1), ("known", 3)}
    assert cleared[("known", 2)].cleared_by is not None and cleared[("known", 2)].cleared_by.entry_id == 99
    # an entry without kinds (an imported allow-list) clears every kind, as allow-lists always did
    standing, cleared = allow_listed(found, [allow(0)])
    assert set(cleared) == set(found) and not standing
    # ...but never an exact digest, nor a closer PDQ match
    exact = {("known", 5): match(entry=5, signal="sha256", distance=0), ("known", 1): plain}
    standing, cleared = allow_listed(exact, [allow(5)])
    assert set(standing) == set(exact) and not cleared


def test_kinds_cover_the_same_kind_or_a_weaker_one() -> None:
    plain = MatchKind.of("pdq")
    assert plain.covers(match(query_variant="flipx")) and plain.covers(match(variant="crop6@0,0.5"))
    assert plain.covers(match()) and not plain.covers(match(check="orb"))  # another check: not covered
    assert not plain.covers(match(signal="sha256"))
    mirrored = MatchKind.of("pdq", query_variant="flipx")
    assert mirrored.covers(match(query_variant="flipx")) and not mirrored.covers(match())
    assert not mirrored.covers(match(query_variant="flipy"))
    cropped = MatchKind.of("pdq", variant="frame@12.000|crop6@0,0.5")  # a frame's mark is no kind
    assert cropped.variant == "crop6@0,0.5"
    assert cropped.covers(match(variant="crop6@0,0.5")) and cropped.covers(
        match(variant="frame@3.000|crop6@0,0.5")
    )
    assert not cropped.covers(match())
    second = MatchKind.of("pdq", check="orb")
    assert second.covers(match(check="orb")) and not second.covers(match())
    assert MatchKind.of("pdq", check="pdq") == plain  # the check named as the signal itself is no check


def test_labels_name_kinds_and_a_malformed_one_clears_nothing() -> None:
    assert parse("A1") is None and kinds_of(["A1", "B2"]) is None  # no kinds: every kind
    assert parse("rejected:pdq/query_variant=flipx") == MatchKind("pdq", "flipx")
    for bad in ("rejected:", "rejected:PDQ", "rejected:pdq/colour=red", "rejected:pdq/query_variant="):
        assert parse(bad) is NOTHING
        assert not covers(allow(0, bad), match())
    assert covers(allow(0, "A1"), match(query_variant="flipx"))


@given(
    signal=st.sampled_from(["pdq", "md5"]),
    query_variant=st.sampled_from(["", "flipx", "rotate90", "trimmed"]),
    variant=st.sampled_from(["", "crop6@0.25,0.5", "rotate+3", "frame@1.000", "frame@2.000|rotate-3"]),
    check=st.sampled_from(["", "orb"]),
)
def test_a_kind_survives_its_label_and_covers_its_own_match(
    signal: str, query_variant: str, variant: str, check: str
) -> None:
    kind = MatchKind.of(signal, query_variant, variant, check)
    assert parse(kind.label()) == kind
    assert kind.covers(match(signal=signal, query_variant=query_variant, variant=variant, check=check))


def test_a_rejection_records_its_perceptual_kinds_not_its_exact_ones() -> None:
    stored = [
        {"signal_type": "sha256", "check": "sha256", "distance": 0},
        {"signal_type": "pdq", "check": "pdq", "distance": 12, "query_variant": "flipx", "variant": None},
        {"signal_type": "pdq", "check": "orb", "distance": 40, "query_variant": None, "variant": None},
        {"signal_type": "pdq", "check": "pdq", "distance": 3, "query_variant": "flipx"},  # the same kind
        "not a match",
    ]
    assert [k.label() for k in rejected_kinds(stored)] == [
        "rejected:pdq/query_variant=flipx",
        "rejected:pdq/check=orb",
    ]


def test_a_file_matching_the_entry_through_its_own_variant_is_cleared_only_through_that_variant() -> None:
    """A mirror of the rejected file (it matched the entry through flipx): of the rejected plain kind, only
    its matches through flipx are cleared; a rejected kind through a variant is not composed."""
    plain_kind, mirrored_kind = MatchKind.of("pdq").label(), MatchKind.of("pdq", "flipx").label()
    via_mirror = allow(2, plain_kind, mirrored_kind, query_variant="flipx")
    assert covers(via_mirror, match(query_variant="flipx"))
    assert not covers(via_mirror, match())  # the near copy of an original: never cleared by a mirror
    assert not covers(via_mirror, match(query_variant="rotate90"))
    assert not covers(allow(2, mirrored_kind, query_variant="flipx"), match(query_variant="flipx"))
    found = {
        ("known", 1): match(distance=14),
        ("known", 2): match(entry=2, distance=9, query_variant="flipx"),
    }
    standing, cleared = allow_listed(found, [via_mirror])
    assert set(standing) == {("known", 1)} and set(cleared) == {("known", 2)}
