"""``python -m speechkd.bin.score``: Kaldi text and lhotse references, id checks, all metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.audio import AudioSource

from speechkd.bin.score import main
from speechkd.errors import ConfigError, DataError
from speechkd.eval.normalize import normalize_text

REFS = {
    "ca-001": ("ca", "Bon dia, com estàs?"),
    "ca-002": ("ca", "Tinc 3 gats."),
    "th-001": ("th", "ราคา 250 บาท"),
    "en-001": ("en", "Mr. Smith can't come."),
}
HYPS = {
    "ca-001": "bon dia com estas",
    "ca-002": "tinc tres gats",
    "th-001": "ราคา 25 บาท",
    "en-001": "mister smith can not come",
}


def _kaldi(path: Path, items: dict[str, str]) -> Path:
    path.write_text("".join(f"{k} {v}\n" for k, v in items.items()), encoding="utf-8")
    return path


def _supervisions(path: Path) -> Path:
    sups = [
        SupervisionSegment(
            id=utt, recording_id=f"rec-{utt}", start=0.0, duration=1.0, text=text, language=lang
        )
        for utt, (lang, text) in REFS.items()
    ]
    SupervisionSet.from_segments(sups).to_file(path)
    return path


def _cuts(path: Path, sup_path: Path) -> Path:
    recordings = RecordingSet.from_recordings(
        Recording(
            id=f"rec-{utt}",
            sources=[AudioSource(type="file", channels=[0], source="/nonexistent.wav")],
            sampling_rate=16000,
            num_samples=16000,
            duration=1.0,
        )
        for utt in REFS
    )
    cuts = CutSet.from_manifests(
        recordings=recordings, supervisions=SupervisionSet.from_file(sup_path)
    )
    cuts.to_file(path)
    return path


def _scores(out_dir: Path, set_name: str = "test") -> dict:
    return json.loads((out_dir / f"scores-{set_name}.json").read_text(encoding="utf-8"))


def test_kaldi_text_with_ref_cuts_matches_jiwer(tmp_path: Path) -> None:
    ref = _kaldi(tmp_path / "ref", {k: v for k, (_, v) in REFS.items()})
    hyp = _kaldi(tmp_path / "hyp", HYPS)
    sups = _supervisions(tmp_path / "sups.jsonl.gz")
    out = tmp_path / "decode"
    argv = ["--ref", str(ref), "--hyp", str(hyp), "--set-name", "test", "--out-dir", str(out)]
    assert main([*argv, "--metric", "wer", "--ref-cuts", str(sups)]) == 0
    scores = _scores(out)
    refs_n = [normalize_text(REFS[k][1], REFS[k][0]) for k in REFS]
    hyps_n = [normalize_text(HYPS[k], REFS[k][0]) for k in REFS]
    assert scores["score"] == pytest.approx(100 * jiwer.wer(refs_n, hyps_n), abs=1e-4)
    assert scores["languages"] == ["ca", "en", "th"]
    assert scores["per_language"]["en"]["err"] == 0
    # Thai: 7 characters plus the number; only "250" -> "25" is wrong.
    assert scores["per_language"]["th"]["wrd"] == 8
    assert scores["per_language"]["th"]["sub"] == 1
    assert "script-split" in scores["normalizers"]["th"]
    assert (out / "errs-test.txt").read_text(encoding="utf-8").startswith("%WER ")
    assert (out / "recogs-test.txt").is_file() and (out / "wer-summary-test.txt").is_file()

    assert main([*argv, "--metric", "cer", "--ref-cuts", str(sups)]) == 0
    cer = _scores(out)
    refs_c = [normalize_text(REFS[k][1], REFS[k][0], split_script=False) for k in REFS]
    hyps_c = [normalize_text(HYPS[k], REFS[k][0], split_script=False) for k in REFS]
    assert cer["metric"] == "cer"
    assert cer["score"] == pytest.approx(100 * jiwer.cer(refs_c, hyps_c), abs=1e-4)


def test_lhotse_references(tmp_path: Path) -> None:
    sups = _supervisions(tmp_path / "sups.jsonl.gz")
    cuts = _cuts(tmp_path / "cuts.jsonl.gz", sups)
    cut_ids = [c.id for c in CutSet.from_file(cuts)]
    sup_to_cut = {c.supervisions[0].id: c.id for c in CutSet.from_file(cuts)}
    hyp_by_cut = _kaldi(tmp_path / "hyp_cut", {sup_to_cut[k]: v for k, v in HYPS.items()})
    hyp_by_sup = _kaldi(tmp_path / "hyp_sup", HYPS)
    for ref, hyp, out in ((cuts, hyp_by_cut, "d1"), (sups, hyp_by_sup, "d2")):
        argv = ["--ref", str(ref), "--hyp", str(hyp), "--set-name", "test"]
        assert main([*argv, "--out-dir", str(tmp_path / out)]) == 0
    one, two = _scores(tmp_path / "d1"), _scores(tmp_path / "d2")
    assert one["totals"] == two["totals"] and one["totals"]["snt"] == len(cut_ids)


def test_mismatched_ids(tmp_path: Path) -> None:
    ref = _kaldi(tmp_path / "ref", {f"utt{i}": "a b c" for i in range(10)})
    hyp = _kaldi(tmp_path / "hyp", {"utt0": "a b c", "utt1": "a b"})
    argv = ["--ref", str(ref), "--hyp", str(hyp), "--set-name", "dev", "--out-dir", str(tmp_path)]
    with pytest.raises(DataError, match=r"8 of 10 reference ids .* 'utt2', .* and 3 more"):
        main([*argv, "--language", "en"])
    assert main([*argv, "--language", "en", "--allow-missing"]) == 0
    scores = _scores(tmp_path, "dev")
    assert scores["missing_hypotheses"] == 8
    assert scores["totals"]["del"] == 8 * 3 + 1
    extra = _kaldi(tmp_path / "hyp2", {"utt0": "a", "ghost": "x"})
    with pytest.raises(DataError, match="ghost"):
        main([*argv[:2], "--hyp", str(extra), *argv[4:], "--language", "en", "--allow-missing"])


def test_language_is_required_for_wer(tmp_path: Path) -> None:
    ref = _kaldi(tmp_path / "ref", {"u": "a"})
    argv = ["--ref", str(ref), "--hyp", str(ref), "--set-name", "x", "--out-dir", str(tmp_path)]
    with pytest.raises(ConfigError, match="--language"):
        main(argv)


def test_empty_reference_needs_opt_in(tmp_path: Path) -> None:
    ref = _kaldi(tmp_path / "ref", {"u1": "hello", "u2": "(laughs)"})
    hyp = _kaldi(tmp_path / "hyp", {"u1": "hello", "u2": "ha"})
    argv = ["--ref", str(ref), "--hyp", str(hyp), "--set-name", "x", "--out-dir", str(tmp_path)]
    with pytest.raises(DataError, match="'u2': empty reference"):
        main([*argv, "--language", "en"])
    assert main([*argv, "--language", "en", "--allow-empty-ref"]) == 0
    assert _scores(tmp_path, "x")["totals"]["ins"] == 1


def test_bleu_from_translation_manifest(tmp_path: Path) -> None:
    sups = [
        SupervisionSegment(
            id=f"st-{i}",
            recording_id=f"r{i}",
            start=0,
            duration=1,
            text=src,
            language="en",
            custom={"translation": tgt, "tgt_lang": "de"},
        )
        for i, (src, tgt) in enumerate(
            [("the dog runs", "Der Hund läuft ."), ("the cat sits", "Die Katze sitzt .")]
        )
    ]
    SupervisionSet.from_segments(sups).to_file(tmp_path / "st.jsonl.gz")
    hyp = _kaldi(tmp_path / "hyp", {"st-0": "Der Hund läuft .", "st-1": "Eine Katze sitzt ."})
    argv = ["--ref", str(tmp_path / "st.jsonl.gz"), "--hyp", str(hyp), "--set-name", "tst"]
    assert main([*argv, "--out-dir", str(tmp_path), "--metric", "bleu"]) == 0
    import sacrebleu

    expected = sacrebleu.corpus_bleu(
        ["Der Hund läuft .", "Eine Katze sitzt ."], [["Der Hund läuft .", "Die Katze sitzt ."]]
    )
    scores = _scores(tmp_path, "tst")
    assert scores["score"] == pytest.approx(expected.score, abs=1e-4)
    assert scores["signature"].startswith("nrefs:1|case:mixed")
    assert scores["languages"] == ["de"]
    assert main([*argv, "--out-dir", str(tmp_path), "--metric", "chrf"]) == 0
    assert _scores(tmp_path, "tst")["metric"] == "chrf"


def test_runs_as_module(tmp_path: Path) -> None:
    ref = _kaldi(tmp_path / "ref", {"u1": "Hola món"})
    hyp = _kaldi(tmp_path / "hyp", {"u1": "hola mon"})
    cmd = [sys.executable, "-m", "speechkd.bin.score", "--ref", str(ref), "--hyp", str(hyp)]
    cmd += ["--set-name", "t", "--out-dir", str(tmp_path), "--language", "ca"]
    subprocess.run(cmd, check=True, capture_output=True)
    assert _scores(tmp_path, "t")["score"] == pytest.approx(50.0)
