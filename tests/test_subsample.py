"""Per-language subsets: most up-voted first (DistilWhisper's CV-13 selection), seeded random."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
from lhotse import CutSet, MonoCut, Recording, SupervisionSegment, load_manifest
from lhotse.audio import AudioSource

from speechkd.bin import subsample_cuts
from speechkd.data.prepare.commonvoice import ClipRow, select_most_upvoted
from speechkd.data.subsample import (
    check_disjoint,
    language_counts,
    parse_count,
    select_by_votes,
    select_random,
)
from speechkd.errors import ConfigError, DataError


def make_cut(
    rec: str,
    language: str = "ca",
    up: int | None = 0,
    down: int | None = 0,
    index: int = 0,
    cut_custom: dict | None = None,
) -> MonoCut:
    recording = Recording(
        id=rec,
        sources=[AudioSource(type="file", channels=[0], source=f"/nowhere/{rec}.mp3")],
        sampling_rate=48000,
        num_samples=48000,
        duration=1.0,
    )
    custom = {}
    if up is not None:
        custom["up_votes"] = up
    if down is not None:
        custom["down_votes"] = down
    sup = SupervisionSegment(
        id=rec, recording_id=rec, start=0.0, duration=1.0, text="x", language=language,
        custom=custom,
    )  # fmt: skip
    return MonoCut(
        id=f"{rec}-{index}", start=0.0, duration=1.0, channel=0, supervisions=[sup],
        recording=recording, custom=cut_custom,
    )  # fmt: skip


def ids(cuts: CutSet) -> list[str]:
    return [c.recording_id for c in cuts]


# (recording, up, down): ranking by most up, fewest down, then recording id
CA = [("ca_d", 2, 0), ("ca_c", 5, 1), ("ca_b", 5, 1), ("ca_z", 5, 0), ("ca_e", 3, 0)]
TH = [("th_a", 1, 0), ("th_b", 4, 0)]


def corpus() -> CutSet:
    cuts = [make_cut(r, "ca", u, d, i) for i, (r, u, d) in enumerate(CA)]
    cuts += [make_cut(r, "th", u, d, i) for i, (r, u, d) in enumerate(TH)]
    return CutSet.from_cuts(cuts)


def test_most_upvoted_per_language_in_input_order():
    cuts = corpus()
    assert ids(select_by_votes(cuts, 1)) == ["ca_z", "th_b"]
    # ca_z (5 up, 0 down), then ca_b before ca_c (5 up, 1 down: recording id); input order kept
    assert ids(select_by_votes(cuts, 3)) == ["ca_c", "ca_b", "ca_z", "th_a", "th_b"]
    assert ids(select_by_votes(cuts, 2, languages=["ca"])) == ["ca_b", "ca_z"]
    assert len(select_by_votes(cuts, None)) == len(cuts)
    assert len(select_by_votes(cuts, 0)) == 0
    # without the down-vote tie-break: ca_b, ca_c, ca_z tie on 5 and go by recording id
    assert ids(select_by_votes(cuts, 2, tie_field=None, languages=["ca"])) == ["ca_c", "ca_b"]


def test_same_order_as_the_commonvoice_preparer_and_nested_subsets():
    rng = random.Random(0)
    rows = [(f"common_voice_ca_{n}", rng.randint(2, 5), rng.randint(0, 2)) for n in range(60)]
    cuts = CutSet.from_cuts(make_cut(r, "ca", u, d, i) for i, (r, u, d) in enumerate(rows))
    clip_rows = [ClipRow({"path": f"{r}.mp3"}, r, u, d) for r, u, d in rows]
    pool = select_by_votes(cuts, 40)
    for n in (1, 7, 25, 40):
        expected = [Path(r.path).stem for r in select_most_upvoted(clip_rows, n)]
        assert ids(select_by_votes(cuts, n)) == expected
        # choosing from the down-sampled pool gives the same clips as from the whole set
        assert ids(select_by_votes(pool, n)) == expected


def test_fewer_cuts_than_asked_keeps_all_and_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="speechkd.data.subsample"):
        selected = select_by_votes(corpus(), 4)
    assert language_counts(selected) == {"ca": 4, "th": 2}
    assert "th: asked for 4 cuts, only 2 available" in caplog.text
    assert "ca:" not in caplog.text


def test_missing_votes_error_or_zero():
    cuts = CutSet.from_cuts([make_cut("a", up=3), make_cut("b", up=None), make_cut("c", up=1)])
    with pytest.raises(DataError, match=r"cut b-0: no 'up_votes'"):
        select_by_votes(cuts, 2)
    assert ids(select_by_votes(cuts, 2, missing_votes="zero")) == ["a", "c"]
    with pytest.raises(ConfigError, match="missing_votes"):
        select_by_votes(cuts, 2, missing_votes="skip")
    bad = CutSet.from_cuts([make_cut("a", up=3), make_cut("b", cut_custom={"up_votes": "many"})])
    with pytest.raises(DataError, match="cut b-0: up_votes 'many' is not an integer"):
        select_by_votes(bad, 1)


def test_votes_in_cut_custom_and_other_fields():
    cuts = CutSet.from_cuts(
        [make_cut("a", up=9), make_cut("b", up=1, cut_custom={"up_votes": 10, "score": 1})]
    )
    assert ids(select_by_votes(cuts, 1)) == ["b"]  # cut.custom overrides supervision.custom
    with pytest.raises(DataError, match="cut a-0: no 'score'"):
        select_by_votes(cuts, 1, field="score")


def test_seed_breaks_ties_deterministically():
    cuts = CutSet.from_cuts(make_cut(f"r{i:02d}", up=1) for i in range(30))
    by_id = ids(select_by_votes(cuts, 5))
    assert by_id == [f"r{i:02d}" for i in range(5)]
    seeded = ids(select_by_votes(cuts, 5, seed=3))
    assert seeded == ids(select_by_votes(cuts, 5, seed=3))
    assert seeded != by_id and seeded != ids(select_by_votes(cuts, 5, seed=4))


def test_language_errors():
    with pytest.raises(DataError, match="no cuts of language.* uk"):
        select_by_votes(corpus(), 1, languages=["ca", "uk"])
    nolang = make_cut("x", language=None)
    with pytest.raises(DataError, match="cut x-0: no supervision.language"):
        select_random(CutSet.from_cuts([nolang]), 1)
    dup = [make_cut("a"), make_cut("a")]
    with pytest.raises(DataError, match="a-0 occurs more than once"):
        select_by_votes(CutSet(dup), 1)
    with pytest.raises(ConfigError):
        select_by_votes(corpus(), -1)


def test_random_is_seeded_and_independent_of_order():
    cuts = [make_cut(f"r{i:02d}", "ca" if i % 3 else "th", index=i) for i in range(30)]
    a = select_random(CutSet.from_cuts(cuts), 4, seed=1)
    b = select_random(CutSet.from_cuts(cuts[::-1]), 4, seed=1)
    assert language_counts(a) == {"ca": 4, "th": 4}
    assert sorted(ids(a)) == sorted(ids(b))
    assert ids(b) == [i for i in reversed(ids(a))]  # input order kept
    assert set(ids(select_random(CutSet.from_cuts(cuts), 4, seed=2))) != set(ids(a))
    assert len(select_random(CutSet.from_cuts(cuts), None)) == 30


def test_check_disjoint_names_shared_recordings():
    cuts = corpus()
    check_disjoint(cuts, {"other": CutSet.from_cuts([make_cut("zz")])})
    other = CutSet.from_cuts([make_cut("th_a", index=7)])  # same clip, another cut id
    with pytest.raises(DataError, match="dev shares 1 recording.* with train.jsonl.gz: th_a"):
        check_disjoint(cuts, {"train.jsonl.gz": other}, what="dev")


def test_parse_count():
    assert parse_count("10k") == 10_000 and parse_count("28K") == 28_000
    assert parse_count("3") == 3 and parse_count(5) == 5
    assert parse_count("all") is None and parse_count(None) is None
    for bad in ("ten", "-1", "1.5k"):
        with pytest.raises(ConfigError):
            parse_count(bad)


def test_cli_combines_inputs_and_writes_atomically(tmp_path, capsys):
    cuts = corpus()
    ca, th = tmp_path / "ca.jsonl.gz", tmp_path / "th.jsonl.gz"
    cuts.filter(lambda c: c.supervisions[0].language == "ca").to_file(ca)
    cuts.filter(lambda c: c.supervisions[0].language == "th").to_file(th)
    out = tmp_path / "sub" / "train.jsonl.gz"
    argv = ["--cuts", str(ca), str(th), "--out", str(out), "--per-language", "1"]
    assert subsample_cuts.main(argv + ["--resample", "16000"]) == 0
    written = load_manifest(out)
    assert ids(written) == ["ca_z", "th_b"]
    assert {c.sampling_rate for c in written} == {16000}
    assert "kept/available per language: ca=1/5 th=1/2" in capsys.readouterr().err
    assert not list(out.parent.glob(".tmp-*"))
    # only some languages; then a random draw of everything
    assert subsample_cuts.main(argv[:-1] + ["2", "--languages", "th"]) == 0
    assert ids(load_manifest(out)) == ["th_a", "th_b"]
    assert subsample_cuts.main(argv[:-1] + ["all", "--by", "random"]) == 0
    assert len(load_manifest(out)) == 7
    # a clip of the selection in another manifest; a file listed twice; a missing field
    with pytest.raises(DataError, match="shares 1 recording.*th_b"):
        subsample_cuts.main(argv + ["--languages", "th", "--disjoint-from", str(th)])
    with pytest.raises(DataError, match="cut th_a-0 already read from"):
        subsample_cuts.main(["--cuts", str(th), str(th), "--out", str(out), "--per-language", "1"])
    with pytest.raises(DataError, match="no 'score'"):
        subsample_cuts.main(argv + ["--by", "score"])
    assert subsample_cuts.main(argv + ["--by", "score", "--missing-votes", "zero"]) == 0
    with pytest.raises(ConfigError, match="10x"):
        subsample_cuts.main(argv[:-1] + ["10x"])


def test_cli_path_prefix_makes_relative_paths_absolute(tmp_path):
    relative_cut = make_cut("rel_a", "ca")
    relative_cut.recording.sources[0].source = "data/wav/rel_a.wav"
    cuts = CutSet.from_cuts([*corpus(), relative_cut])
    inp, out = tmp_path / "in.jsonl.gz", tmp_path / "out.jsonl.gz"
    cuts.to_file(inp)
    argv = ["--cuts", str(inp), "--out", str(out), "--per-language", "all", "--by", "random"]
    assert subsample_cuts.main(argv + ["--path-prefix", str(tmp_path / "recipe")]) == 0
    sources = {c.recording.sources[0].source for c in load_manifest(out)}
    relative = {c.recording.sources[0].source for c in cuts}
    expected = {
        s if Path(s).is_absolute() else str((tmp_path / "recipe").resolve() / s) for s in relative
    }
    assert sources == expected
    assert str((tmp_path / "recipe").resolve() / "data/wav/rel_a.wav") in sources
