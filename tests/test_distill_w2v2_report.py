"""DistillW2V2 report: Tables 1-3 from system.json, w2v2_decode score files and the RTF JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechkd.errors import ConfigError, DataError
from speechkd.eval import distill_w2v2_data as dat
from speechkd.eval import distill_w2v2_report as rep
from speechkd.eval import report_inputs
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.results_json import load_results_json
from speechkd.eval.rtf import RtfRow
from speechkd.eval.wer import Utterance, score_utterances

TOKENS = 400  # reference tokens of every fake decode: rates are multiples of 0.25 %


def write_decode(
    system_dir: Path,
    set_name: str,
    errors: int,
    units: str = "phones",
    lm: Path | None = None,
    streaming: bool = False,
) -> Path:
    """A decode dir as ``speechkd.bin.w2v2_decode`` writes it (same writer, same extra fields):
    ``errors`` substitutions over two utterances of ``TOKENS`` reference tokens in all."""
    decoder = "lexicon" if lm is not None else "greedy"
    out = dat.decode_dir(system_dir, set_name, dat.LM if lm else dat.BEST_PATH, streaming)
    half = TOKENS // 2
    utts = []
    for i, n in enumerate((min(errors, half), errors - min(errors, half))):
        ref = ["a"] * half
        hyp = ["b"] * n + ["a"] * (half - n)
        utts.append(Utterance(f"utt{i}", " ".join(ref), " ".join(hyp), "en"))
    report = score_utterances(utts, "wer")
    extra = {
        "checkpoint": str(system_dir / "checkpoint_best.pt"),
        "unit": "phone",
        "scored_units": units,
        "decoder": decoder,
        "lm": str(lm) if lm else None,
        "data_dir": "data/fairseq/asr_en",
        "streaming": streaming,
        "command": "python -m speechkd.bin.w2v2_decode ...",
        "decode_seconds": 2.0,
        "rtf": 0.1,
        "device": "cpu",
        "ref": f"data/fairseq/asr_en/{set_name}.phn",
        "hyp": str(out / f"hyp-{set_name}.txt"),
    }
    write_error_rate_files(out, set_name, report, {"en": "none"}, **extra)
    record = {"set": set_name, "decoder": decoder, "scored_units": units, "streaming": streaming}
    record.update(audio_seconds=20.0, decode_seconds=2.0, rtf=0.1, device="cpu")
    (out / f"decode-{set_name}.json").write_text(json.dumps(record))
    return out


def write_system(root: Path, name: str, role: str, **fields) -> Path:
    """A system dir with its ``system.json`` (the recipe's keys)."""
    variant = fields.pop("variant", {"teacher": "teacher", "step1": "sn"}.get(role, "ss"))
    streaming = variant == "ss"
    info = {
        "name": name,
        "role": role,
        "arch": "tiny_teacher" if role == "teacher" else "tiny_student",
        "variant": variant,
        "history": 600 if streaming else None,
        "chunk": 48 if streaming else None,
        "alpha": None if role == "teacher" else 0.8,
        "beta": None if role == "teacher" else 0.8,
        "setting": None,
        "teacher": None,
        "params": 1_200_000 if role == "teacher" else 100_000,
    }
    info.update(fields)
    directory = root / name
    directory.mkdir(parents=True)
    (directory / "system.json").write_text(json.dumps(info))
    return directory


def write_arpa(path: Path, order: int) -> Path:
    lines = ["\\data\\"] + [f"ngram {n}=1" for n in range(1, order + 1)] + ["", "\\1-grams:"]
    path.write_text("\n".join(lines + ["-1.0\ta", "", "\\end\\"]) + "\n")
    return path


# errors (of TOKENS) per system and set: test favours the two-step student, dev does not;
# M3 is worse than M1 on dev, the other LF-MMI settings are better on both sets
ERRORS = {
    "T": {"test": 40, "dev": 44},
    "M1": {"test": 60, "dev": 64},
    "M2": {"test": 56, "dev": 60},
    "M3": {"test": 52, "dev": 68},
    "M4": {"test": 50, "dev": 54},
    "SS": {"test": 52, "dev": 70},
    "single": {"test": 62, "dev": 66},
}
SETTINGS = {"M1": (1.0, 0.0), "M2": (1.0, 1.0), "M3": (0.8, 1.0), "M4": (0.8, 0.8)}


@pytest.fixture
def systems(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "exp"
    dirs = {"T": write_system(root, "T", "teacher")}
    for m, (alpha, beta) in SETTINGS.items():
        dirs[m] = write_system(root, m, "step1", alpha=alpha, beta=beta, setting=m, teacher="T")
    dirs["SS"] = write_system(root, "SS", "step2", teacher="M4")
    dirs["single"] = write_system(root, "single", "single_step", teacher="T")
    lm = write_arpa(tmp_path / "word_4gram.arpa", 4)
    for name, directory in dirs.items():
        for set_name, errors in ERRORS[name].items():
            write_decode(directory, set_name, errors)
        write_decode(directory, "test", ERRORS[name]["test"] // 2, units="words", lm=lm)
    return dirs


def write_rtf(path: Path) -> Path:
    rows = [
        RtfRow("tiny_teacher", 128, 128, 512, 4, 1_000_000, 1_100_000, rtf=0.02),
        RtfRow("tiny_student", 64, 64, 256, 2, 90_000, 95_000, rtf=0.005),
        RtfRow("S5", 256, 384, 1536, 10, 22_400_000, 22_900_000, 22e6, 0.111, rtf=0.1),
    ]
    payload = {
        "environment": {"cpu": "Test CPU", "torch": "2.x", "threads": 1},
        "settings": {"audio_seconds": 1.0, "repeats": 1, "streaming": False, "clock": "cpu"},
        "rows": [r.to_json() for r in rows],
    }
    path.write_text(json.dumps(payload))
    return path


def table_rows(text: str, heading: str) -> dict[str, list[str]]:
    """Cells of the first table under ``heading``, keyed by the System column; "" → header."""
    section = text.split(heading, 1)[1]
    block: list[str] = []
    for line in section.splitlines():
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    cells = [[c.strip() for c in x.strip("|").split(" | ")] for x in block if "---" not in x]
    header = cells[0]
    col = header.index("System")
    out = {"": header}
    for row in cells[1:]:
        out[row[col]] = row
    return out


def cell(rows: dict[str, list[str]], system: str, column: str) -> str:
    return rows[system][rows[""].index(column)]


def test_look_ahead_is_half_a_chunk_of_20ms_frames() -> None:
    assert dat.FRAME_MS == 20.0
    assert dat.look_ahead_ms(48) == 480.0  # the paper's (600, 48) -> 480 ms
    assert dat.look_ahead_ms(8) == 80.0
    assert dat.look_ahead_ms(None) is None


def test_report_tables_and_computed_statements(systems, tmp_path) -> None:
    out = tmp_path / "report.md"
    rtf = write_rtf(tmp_path / "rtf.json")
    rep.write_report(systems, ["test", "dev"], out, rtf=rtf)
    text = out.read_text()
    assert text.startswith("## DistillW2V2\n")

    # Table 2: teacher, the first step the second step learned from (M4 only), SS, single step
    t2 = table_rows(text, "(Table 2)")
    assert list(t2)[1:] == ["T", "M4", "SS", "single"]
    assert t2[""][4:] == ["test PER (best path)", "test WER (4-gram LM)", "dev PER (best path)"]
    assert t2["T"][:4] == ["Teacher", "T", "(∞, ∞)", "–"]
    assert t2["SS"][:4] == ["Second step (SN → SS)", "SS", "(600, 48)", "480 ms"]
    assert t2["single"][0] == "Single step (T → SS)"
    for name in ("T", "M4", "SS", "single"):
        assert (
            cell(t2, name, "test PER (best path)") == f"{100 * ERRORS[name]['test'] / TOKENS:.2f}"
        )
        assert cell(t2, name, "dev PER (best path)") == f"{100 * ERRORS[name]['dev'] / TOKENS:.2f}"
        lm_rate = 100 * (ERRORS[name]["test"] // 2) / TOKENS
        assert cell(t2, name, "test WER (4-gram LM)") == f"{lm_rate:.2f}"
    assert "missing" not in text

    # two-step against single step: computed per set (13.00 < 15.50 on test, 17.50 > 16.50 dev)
    (pair,) = dat.compare_two_step(dat.collect(systems, ["test", "dev"]))
    assert (pair.ours, pair.ref) == ("SS", "single")
    assert pair.verdicts == {"test": "yes", "dev": "no"}
    best = next(c for c in pair.comparisons if c.column == dat.Column("test", "best_path", "PER"))
    assert best.relative == pytest.approx(100 * (62 - 52) / 62)
    claims = text.split("### What this run shows\n\n")[1].split("\n\n")[0].splitlines()
    assert claims[:2] == [
        "- Two-step distillation (SS) beats single-step (single) on test (paper: 15 % relative): "
        "**yes** (PER best path 13.00 vs 15.50, +16.1 % relative reduction; WER 4-gram LM 6.50 "
        "vs 7.75, +16.1 % relative reduction).",
        "- Two-step distillation (SS) beats single-step (single) on dev (paper: 15 % relative): "
        "**no** (PER best path 17.50 vs 16.50, -6.1 % relative reduction).",
    ]

    # Table 3: teacher and M1-M4 with their objectives, and the LF-MMI verdicts against M1
    t3 = table_rows(text, "(Table 3)")
    assert list(t3)[1:] == ["T", "M1", "M2", "M3", "M4"]
    assert t3["M1"][:6] == ["M1", "M1", "1", "0", "–", "MSE"]
    assert t3["M2"][:6] == ["M2", "M2", "1", "1", "–", "LF-MMI"]
    assert t3["M3"][4:6] == ["MSE", "LF-MMI"]
    assert t3["M4"][2:6] == ["0.8", "0.8", "MSE", "MSE/LF-MMI"]
    assert cell(t3, "M3", "dev PER (best path)") == "17.00"
    assert claims[2:4] == [
        "- LF-MMI distillation (β > 0) beats the MSE-only M1 on test (paper: M4 12.37 vs M1 "
        "14.29): **yes** (M2 yes, M3 yes, M4 yes; Table 3).",
        "- LF-MMI distillation (β > 0) beats the MSE-only M1 on dev (paper: M4 12.37 vs M1 "
        "14.29): **mixed** (M2 yes, M3 no, M4 yes; Table 3).",
    ]
    assert claims[4] == (
        "- The first-step student M4 stays within the paper's +4.5 % of the teacher's error rate "
        "on test: **no** (PER best path 12.50 vs 10.00, +25.0 %; WER 4-gram LM 6.25 vs 5.00, "
        "+25.0 %)."
    )
    assert claims[7].startswith("- The streaming student SS stays within the paper's +9.0 %")

    # Table 1: architectures from the RTF JSON, ratios against the teacher's arch; systems
    t1 = table_rows(text, "Systems (params")
    assert cell(t1, "SS", "Latency") == "480 ms" and cell(t1, "T", "Latency") == "–"
    assert cell(t1, "SS", "smaller than teacher") == "12.0x"
    assert cell(t1, "SS", "Decode RTF (device)") == "0.1000 (cpu)"
    arch = text.split("(Table 1)", 1)[1].split("Systems (params", 1)[0]
    student = next(x for x in arch.splitlines() if x.startswith("| tiny_student |"))
    assert "| 11.1x | 4.0x |" in student  # 1.0M / 90k params, RTF 0.02 / 0.005
    s5 = next(x for x in arch.splitlines() if x.startswith("| S5 |"))
    assert "| 22.4M | 22.0M | +1.8 | 0.100 | 0.111 |" in s5

    # RESULTS.json beside the report: the tables' numbers under the stable names
    rows = {r.key: r.value for r in load_results_json(tmp_path / "RESULTS.json")}
    systems_ = {k[0] for k in rows}
    assert systems_ == {
        "teacher", "m1", "m2", "m3", "m4", "ss", "single_step",
        "arch_tiny_teacher", "arch_tiny_student", "arch_s5",
    }  # fmt: skip
    for label, name in (("T", "teacher"), ("M4", "m4"), ("SS", "ss"), ("single", "single_step")):
        per = float(cell(t2, label, "test PER (best path)"))
        assert rows[(name, "test", "en", "per")] == pytest.approx(per)
        assert rows[(name, "test", "en", "wer")] == pytest.approx(
            float(cell(t2, label, "test WER (4-gram LM)"))
        )
    assert rows[("m3", "dev", "en", "per")] == pytest.approx(17.0)
    assert ("m3", "dev", "en", "wer") not in rows  # no LM decode on dev
    assert rows[("m4", "all", "all", "alpha")] == 0.8 and rows[("m1", "all", "all", "beta")] == 0
    assert rows[("ss", "all", "all", "latency_ms")] == 480.0
    assert rows[("ss", "all", "all", "params")] == 100_000
    assert rows[("ss", "all", "all", "times_smaller_than_teacher")] == pytest.approx(12.0)
    assert rows[("ss", "all", "all", "decode_rtf")] == pytest.approx(0.1)
    assert rows[("arch_s5", "all", "all", "params")] == 22_400_000
    assert rows[("arch_s5", "all", "all", "rtf_paper")] == pytest.approx(0.111)
    assert rows[("arch_tiny_student", "all", "all", "times_faster_than_ref")] == pytest.approx(4.0)


def test_missing_decodes_show_dashes_and_are_listed(systems, tmp_path) -> None:
    missing = dat.decode_dir(systems["single"], "dev", dat.BEST_PATH, False)
    for f in missing.iterdir():
        f.unlink()
    missing.rmdir()
    out = rep.write_report(systems, ["test", "dev"], tmp_path / "r.md")
    text = out.read_text()
    t2 = table_rows(text, "(Table 2)")
    assert cell(t2, "single", "dev PER (best path)") == "–"
    assert f"- single, dev, best path: {missing}/scores-dev.json or " in text
    assert "single-step (single) on dev (paper: 15 % relative): **not tested** (a result is" in text
    assert "No RTF table given" in text
    # a teacher without an LM decode: "–" in the LM column, listed
    lm_dir = dat.decode_dir(systems["T"], "test", dat.LM, False)
    (lm_dir / "scores-test.json").unlink()
    text = rep.write_report(systems, ["test", "dev"], tmp_path / "r.md").read_text()
    assert cell(table_rows(text, "(Table 2)"), "T", "test WER (4-gram LM)") == "–"
    assert f"- T, test, lexicon + LM: {lm_dir}/scores-test.json" in text


def test_units_never_mix_and_streaming_decodes(tmp_path) -> None:
    root = tmp_path / "exp"
    teacher = write_system(root, "T", "teacher")
    student = write_system(root, "SS", "step2", teacher="SN")
    write_decode(teacher, "test", 20, units="words")  # a letter CTC teacher: WER
    write_decode(student, "test", 30)  # a phone student: PER
    write_decode(student, "test", 30, streaming=True)
    write_decode(student, "dev", 36, streaming=True)  # only the streaming decode on dev
    write_decode(teacher, "dev", 24, units="words")
    text = rep.write_report({"T": teacher, "SS": student}, ["test", "dev"], tmp_path / "r.md")
    text = text.read_text()
    t2 = table_rows(text, "(Table 2)")
    assert t2[""][4:] == ["test WER (best path)", "test PER (best path)", "dev WER (best path)",
                          "dev PER (best path)"]  # fmt: skip
    assert t2["T"][4:] == ["5.00", "–", "6.00", "–"]
    assert t2["SS"][4:] == ["–", "7.50", "–", "9.00*"]
    assert "one column per unit" in text
    assert "where decode_<set> is missing): SS on dev." in text
    assert "missing result" not in text
    stream = text.split("### Streaming decoding", 1)[1]
    assert "| SS | test | best path | PER | 7.50 | 7.50 | yes | 0.1000 |" in stream
    assert "| SS | dev | best path | PER | – | 9.00 | – | 0.1000 |" in stream
    rows = {r.key: r.value for r in load_results_json(tmp_path / "RESULTS.json")}
    assert rows[("teacher", "test", "en", "wer_best_path")] == pytest.approx(5.0)
    assert rows[("ss", "dev", "en", "per")] == pytest.approx(9.0)  # the streaming stand-in
    assert rows[("ss", "dev", "en", "per_streaming")] == pytest.approx(9.0)
    assert "single-step: **not tested** (no second-step and single-step systems" in text
    assert "- Chunk-by-chunk decoding gives the chunk-masked result: **yes**" in text


def test_bad_inputs_raise(systems, tmp_path) -> None:
    for spec in ("T", "=exp/T", "T=", " = "):
        with pytest.raises(ConfigError, match="NAME=SYSTEM_DIR"):
            report_inputs.parse_system_spec(spec)
    with pytest.raises(ConfigError, match="given twice"):
        report_inputs.parse_system_specs(["a=x", "a=y"])
    from speechkd.bin import distill_w2v2_report as cli

    with pytest.raises(ConfigError, match="expected NAME=SYSTEM_DIR"):
        cli.main(["--system", "nodir", "--sets", "test", "--out", str(tmp_path / "x.md")])

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=f"{empty}/system.json: system description not found"):
        rep.write_report({"x": empty}, ["test"], tmp_path / "x.md")
    path = systems["SS"] / "system.json"
    info = json.loads(path.read_text())
    for change, message in (
        ({"role": "student"}, "field 'role' must be one of"),
        ({"params": "22M"}, "field 'params' must be a non-negative integer"),
        ({"chunk": None}, "variant .ss. with chunk None: the chunk-streaming"),
        ({"alpha": 1.5}, "field 'alpha' must be a number in"),
    ):
        path.write_text(json.dumps({**info, **change}))
        with pytest.raises(DataError, match=f"{path}: {message}"):
            dat.collect(systems, ["test"])
    path.write_text("{not json")
    with pytest.raises(DataError, match=f"{path}: cannot read JSON"):
        dat.collect(systems, ["test"])
    path.write_text(json.dumps({k: v for k, v in info.items() if k != "arch"}))
    with pytest.raises(DataError, match=f"{path}: missing field"):
        dat.collect(systems, ["test"])
    path.write_text(json.dumps(info))

    # a best-path dir holding a lexicon decode is a recipe error, not a missing result
    scores = dat.decode_dir(systems["M1"], "test", dat.BEST_PATH, False) / "scores-test.json"
    payload = json.loads(scores.read_text())
    scores.write_text(json.dumps({**payload, "decoder": "lexicon"}))
    with pytest.raises(DataError, match=f"{scores}: field 'decoder' is 'lexicon'"):
        dat.collect(systems, ["test"])
    bad_rtf = tmp_path / "rtf.json"
    bad_rtf.write_text(json.dumps({"environment": {}, "settings": {}, "rows": [{"model": "S5"}]}))
    scores.write_text(json.dumps(payload))
    with pytest.raises(DataError, match="'cnn_channels' must be an integer"):
        dat.collect(systems, ["test"], rtf=bad_rtf)
    with pytest.raises(ConfigError, match="a set is given twice"):
        dat.collect(systems, ["test", "test"])


def test_cli_writes_the_section(systems, tmp_path) -> None:
    from speechkd.bin import distill_w2v2_report as cli
    from speechkd.eval.results import read_section_file

    out = tmp_path / "sec" / "report.md"
    args = [x for name, d in systems.items() for x in ("--system", f"{name}={d}")]
    assert cli.main([*args, "--sets", "test", "dev", "--out", str(out), "--title", "DW"]) == 0
    text = read_section_file(out, tmp_path)
    assert text.startswith("## DW") and "(Table 3)" in text
    assert dat.arpa_order(tmp_path / "word_4gram.arpa") == 4
    assert dat.arpa_order(tmp_path / "absent.arpa") is None


def test_streaming_flags_of_decode_dirs(tmp_path) -> None:
    student = write_system(tmp_path / "exp", "SS", "single_step")
    # decode_<set> decoded chunk by chunk: accepted, its cell marked
    write_decode(student, "test", 8, streaming=False)
    main = dat.decode_dir(student, "test", dat.BEST_PATH, False)
    scores = main / "scores-test.json"
    scores.write_text(json.dumps({**json.loads(scores.read_text()), "streaming": True}))
    result = dat.load_decode(student, "test", dat.BEST_PATH)
    assert result is not None and result.streaming and result.rate == 2.0
    text = rep.write_report({"SS": student}, ["test"], tmp_path / "r.md").read_text()
    assert cell(table_rows(text, "(Table 2)"), "SS", "test PER (best path)") == "2.00*"
    # a _streaming dir must hold a streamed decode
    stream = write_decode(student, "test", 8, streaming=True) / "scores-test.json"
    stream.write_text(json.dumps({**json.loads(stream.read_text()), "streaming": False}))
    with pytest.raises(DataError, match="decode_test_streaming dir holds chunk-by-chunk"):
        dat.collect({"SS": student}, ["test"])


def test_columns_with_the_teacher_at_chance_have_no_verdict(systems, tmp_path) -> None:
    """A teacher at ≥ 95 % WER with the LM: that column has no verdict and no relative change;
    when every column is so, the claim has none."""
    lm = write_arpa(tmp_path / "lm.arpa", 4)
    write_decode(systems["T"], "test", 388, units="words", lm=lm)
    text = rep.write_report(systems, ["test"], tmp_path / "r.md").read_text()
    claims = text.split("### What this run shows\n\n")[1].split("\n\n")[0].splitlines()
    assert claims[0] == (
        "- Two-step distillation (SS) beats single-step (single) on test (paper: 15 % relative): "
        "**yes** (PER best path 13.00 vs 15.50, +16.1 % relative reduction; WER 4-gram LM: no "
        "verdict (T 97.00 WER ≥ 95))."
    )
    for name in ("single", "SS", "M1", "M2", "M3", "M4"):
        write_decode(systems[name], "test", 390, units="words", lm=lm)
        write_decode(systems[name], "test", 390)
    write_decode(systems["T"], "test", 388)
    text = rep.write_report(systems, ["test"], tmp_path / "r.md").read_text()
    assert (
        "single-step (single) on test (paper: 15 % relative): **no verdict: the reference " in text
    )
    assert "relative reduction" not in text
