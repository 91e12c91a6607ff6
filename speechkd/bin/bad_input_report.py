"""Run speechkd's tools on deliberately bad inputs and tabulate the message each one shows.

    python -m speechkd.bin.bad_input_report [--work-dir DIR] [--only NAME ...] > bad_inputs.md

Every case builds its bad input in a fresh directory, runs a command-line tool's ``main`` in
this process exactly as ``run_cli`` would (a speechkd error becomes ``<tool>: error: ...`` and
exit status 1; argparse errors exit 2) and records the exit status and the one-line message.
An uncaught exception is recorded as ``Traceback: <type>: <message>``. The output is a
Markdown table ``| bad input | tool | exit | message |``; cases whose message does not name
what it should are marked and make the exit status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import importlib
import io
import json
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from speechkd.errors import SpeechKDError

SAMPLING_RATE = 16000


@dataclass
class Case:
    """A bad input: ``build(workspace, directory)`` returns the tool's argv and the strings
    (file, field, value) its message must contain."""

    name: str
    tool: str
    build: Callable[[Workspace, Path], tuple[list[str], list[str]]]


@dataclass
class Outcome:
    case: Case
    exit_code: int
    message: str
    expected: list[str] = field(default_factory=list)

    @property
    def names_the_culprit(self) -> bool:
        return (
            self.exit_code != 0
            and not self.message.startswith("Traceback")
            and all(e in self.message for e in self.expected)
        )


def run_tool(tool: str, argv: list[str]) -> tuple[int, str]:
    """Call ``speechkd.bin.<tool>.main(argv)`` as ``run_cli`` does: (exit status, error line)."""
    module = importlib.import_module(f"speechkd.bin.{tool}")
    stderr = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    try:
        with contextlib.redirect_stderr(stderr):
            code = module.main(argv) or 0
        message = ""
    except SpeechKDError as err:
        code, message = 1, f"{tool}: error: {err}"
    except SystemExit as err:  # argparse
        code = err.code if isinstance(err.code, int) else 1
        lines = [line for line in stderr.getvalue().splitlines() if "error:" in line]
        message = lines[-1] if lines else stderr.getvalue().strip()
    except Exception as err:  # noqa: BLE001 - recorded as an unclear failure
        code, message = 1, f"Traceback: {type(err).__name__}: {err}"
    finally:
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
    return code, " ".join(message.split())


class Workspace:
    """Shared, lazily built good inputs: a Whisper tokenizer, tiny models, cuts with features."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, Path] = {}

    def _once(self, key: str, make: Callable[[Path], None]) -> Path:
        if key not in self._cache:
            path = self.root / "shared" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            make(path)
            self._cache[key] = path
        return self._cache[key]

    def tokenizer(self) -> Path:
        def make(path: Path) -> None:
            code, msg = run_tool("prepare_lang", ["--type", "whisper", "--out-dir", str(path)])
            if code:
                raise RuntimeError(msg)

        return self._once("lang_whisper", make)

    def model_config(self, vocab_size: int = 51865) -> Path:
        def make(path: Path) -> None:
            path.write_text(json.dumps(tiny_config(vocab_size).to_dict()), encoding="utf-8")

        return self._once(f"config_{vocab_size}.json", make)

    def model(self, vocab_size: int = 51865) -> Path:
        def make(path: Path) -> None:
            import torch

            from speechkd.whisper.params import build_whisper

            torch.manual_seed(0)
            build_whisper(tiny_config(vocab_size), device="cpu").save_pretrained(path)

        return self._once(f"model_{vocab_size}", make)

    def cuts_with_features(self) -> Path:
        def make(path: Path) -> None:
            cuts = write_cuts(path / "audio", [1.0, 1.5, 2.0])
            code, msg = run_tool(
                "compute_features",
                ["--cuts", str(cuts), "--output-dir", str(path), "--prefix", "good"]
                + ["--split", "train", "--feature-type", "whisper"],
            )
            if code:
                raise RuntimeError(msg)

        return self._once("fbank", make) / "good_cuts_train.jsonl.gz"


def tiny_config(vocab_size: int):
    from speechkd.whisper.params import small_whisper_config

    return small_whisper_config(
        d_model=32, layers=1, heads=2, ffn_dim=64, vocab_size=vocab_size, num_mel_bins=80,
        max_source_positions=150, max_target_positions=32,
    )  # fmt: skip


def tone(seconds: float, index: int = 0, sampling_rate: int = SAMPLING_RATE) -> np.ndarray:
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (0.3 * np.sin(2 * np.pi * (220 + 40 * index) * t)).astype(np.float32)


def write_cuts(directory: Path, durations: list[float], sampling_rate: int = SAMPLING_RATE) -> Path:
    """Tone recordings with an English transcript each, as ``cuts.jsonl.gz``."""
    from lhotse import CutSet, Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    directory.mkdir(parents=True, exist_ok=True)
    cuts = []
    for i, seconds in enumerate(durations):
        wav = directory / f"utt{i}.wav"
        sf.write(wav, tone(seconds, i, sampling_rate), sampling_rate, subtype="PCM_16")
        rec = Recording.from_file(wav, recording_id=f"utt{i}")
        sup = SupervisionSegment(f"utt{i}", f"utt{i}", 0.0, rec.duration, text="a b", language="en")
        cuts.append(MonoCut(f"utt{i}", 0.0, rec.duration, 0, recording=rec, supervisions=[sup]))
    path = directory / "cuts.jsonl.gz"
    CutSet.from_cuts(cuts).to_file(path)
    return path


def manifests(directory: Path, recordings: list, texts: list[str] | None = None) -> list[str]:
    """Write recordings/supervisions manifests; validate_data's ``--recordings/--supervisions``."""
    from lhotse import RecordingSet, SupervisionSegment, SupervisionSet

    texts = texts or ["hello"] * len(recordings)
    sups = [
        SupervisionSegment(r.id, r.id, 0.0, r.duration, text=t, language="en")
        for r, t in zip(recordings, texts, strict=True)
    ]
    rec_path, sup_path = directory / "recs.jsonl.gz", directory / "sups.jsonl.gz"
    RecordingSet.from_recordings(recordings).to_file(rec_path)
    SupervisionSet.from_segments(sups).to_file(sup_path)
    return ["--recordings", str(rec_path), "--supervisions", str(sup_path)]


def file_recording(path: Path, seconds: float = 1.0, sampling_rate: int = SAMPLING_RATE):
    """A Recording entry for ``path`` written from metadata (the file need not be readable)."""
    from lhotse import AudioSource, Recording

    n = int(seconds * sampling_rate)
    return Recording(
        path.stem, [AudioSource("file", [0], str(path))], sampling_rate, n, n / sampling_rate
    )


# --- the cases -------------------------------------------------------------------------------


def corrupt_audio(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    wav = d / "corrupt.wav"
    wav.write_bytes(np.random.default_rng(0).bytes(4000))
    return manifests(d, [file_recording(wav)]), [str(wav)]


def zero_length_audio(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    from lhotse import Recording

    wav = d / "empty.wav"
    sf.write(wav, np.zeros(0, dtype=np.float32), SAMPLING_RATE, subtype="PCM_16")
    return manifests(d, [Recording.from_file(wav)]), [str(wav)]


def wrong_rate_validate(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    from lhotse import Recording

    wav = d / "narrowband.wav"
    sf.write(wav, tone(1.0, 0, 8000), 8000, subtype="PCM_16")
    argv = manifests(d, [Recording.from_file(wav)]) + ["--sampling-rate", "16000"]
    return argv, [str(wav), "8000"]


def truncate(path: Path) -> Path:
    """Cut ``path`` to half its bytes, as a writer killed half-way leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_manifest(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    cuts = truncate(write_cuts(d / "audio", [1.0, 1.0, 1.0]))
    argv = ["--cuts", str(cuts), "--output-dir", str(d / "fbank"), "--prefix", "x"]
    return argv + ["--split", "train"], [str(cuts), "truncated manifest"]


def truncated_train_cuts(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    cuts = truncate(write_cuts(d / "audio", [1.0, 1.0, 1.0]))
    return _train_argv(ws, d) + ["--train-cuts", str(cuts)], [str(cuts), "truncated manifest"]


def truncated_decode_cuts(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    cuts = truncate(write_cuts(d / "audio", [1.0, 1.0, 1.0]))
    argv = ["--model-dir", str(ws.model()), "--tokenizer", str(ws.tokenizer())]
    argv += ["--cuts", str(cuts), "--set-name", "dev", "--out-dir", str(d / "decode")]
    return argv + ["--no-progress"], [str(cuts), "truncated manifest"]


def corrupt_json_manifest(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    cuts = write_cuts(d / "audio", [1.0, 1.0])
    lines = gzip.decompress(cuts.read_bytes()).decode().splitlines(keepends=True)
    lines[1] = lines[1][: len(lines[1]) // 2] + "\n"
    cuts.write_bytes(gzip.compress("".join(lines).encode()))
    argv = ["--cuts", str(cuts), "--out", str(d / "out.jsonl.gz"), "--per-language", "all"]
    return argv + ["--by", "random"], [str(cuts), "line 2 is not valid JSON"]


def wrong_rate_features(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    cuts = write_cuts(d / "audio", [1.0], sampling_rate=8000)
    argv = ["--cuts", str(cuts), "--output-dir", str(d / "fbank"), "--prefix", "x"]
    return argv + ["--split", "train"], ["utt0.wav", "8000 Hz"]


def non_utf8_text(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    text = d / "transcripts.txt"
    text.write_bytes("bon dia\nel gat és aquí\n".encode("latin-1"))
    argv = ["--type", "bpe", "--vocab-size", "20", "--text", str(text), "--out-dir", str(d / "l")]
    return argv, [f"{text}:2", "UTF-8"]


def non_utf8_validate(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    text = d / "transcripts.txt"
    text.write_bytes("bon dia\nel gat és aquí\n".encode("latin-1"))
    good = write_cuts(d / "audio", [1.0]).parent / "utt0.wav"
    from lhotse import Recording

    argv = manifests(d, [Recording.from_file(good)]) + ["--text", str(text)]
    return argv, [f"{text}:2", "UTF-8"]


def empty_transcript(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    from lhotse import Recording

    wav = write_cuts(d / "audio", [1.0]).parent / "utt0.wav"
    argv = manifests(d, [Recording.from_file(wav)], texts=["  "])
    return argv, ["utt0", "empty"]


def missing_features(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    from lhotse import CutSet

    from speechkd.data.manifest_io import read_cuts

    cuts = read_cuts(ws.cuts_with_features())
    archive = d / "feats.lca"
    shutil.copy(cuts[0].features.storage_path, archive)
    from lhotse.utils import fastcopy

    moved = CutSet.from_cuts(
        fastcopy(c, features=fastcopy(c.features, storage_path=str(archive))) for c in cuts
    )
    moved.to_file(d / "cuts.jsonl.gz")
    archive.unlink()
    argv = ["--model-dir", str(ws.model()), "--tokenizer", str(ws.tokenizer())]
    argv += ["--cuts", str(d / "cuts.jsonl.gz"), "--out-dir", str(d / "cache"), "--no-progress"]
    return argv, [str(archive)]


def oov_only_text(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    lexicon = d / "lexicon.txt"
    lexicon.write_text("hello h e l o\nworld w er l d\n", encoding="utf-8")
    text = d / "text.txt"
    text.write_text("foo bar\nbaz qux\n", encoding="utf-8")
    argv = ["--text", str(text), "--lexicon", str(lexicon), "--out-dir", str(d / "lang")]
    return argv, [f"{text}:1", "'foo'", "lexicon"]


def _train_argv(ws: Workspace, d: Path) -> list[str]:
    return [
        "--train-cuts", str(ws.cuts_with_features()), "--model-config", str(ws.model_config()),
        "--tokenizer", str(ws.tokenizer()), "--exp-dir", str(d / "exp"), "--epochs", "1",
        "--device", "cpu", "--no-progress",
    ]  # fmt: skip


def config_wrong_type(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    config = d / "train.yaml"
    config.write_text("epochs: three\nlr: 1.0e-3\n", encoding="utf-8")
    return _train_argv(ws, d) + ["--config", str(config)], [str(config), "epochs", "three"]


def negative_lr(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    return _train_argv(ws, d) + ["--lr", "-1"], ["lr", "-1"]


def clsr_out_of_range(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    argv = _train_argv(ws, d) + ["--clsr-languages", "en"]
    return argv + ["--clsr-options", '{"skip_gate_prob": 1.5}'], ["skip_gate_prob", "1.5"]


def teacher_other_vocab(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    argv = _train_argv(ws, d) + ["--kd-teacher", str(ws.model(vocab_size=1000))]
    return argv, ["vocab_size", "1000", "51865"]


def cache_teacher_other_tokenizer(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    argv = ["--model-dir", str(ws.model(vocab_size=1000)), "--tokenizer", str(ws.tokenizer())]
    argv += ["--cuts", str(ws.cuts_with_features()), "--out-dir", str(d / "cache")]
    return argv + ["--no-progress"], [str(ws.model(vocab_size=1000)), "1000", "51865"]


def pickled_checkpoint(ws: Workspace, d: Path) -> tuple[list[str], list[str]]:
    import torch

    model = d / "teacher"
    model.mkdir()
    shutil.copy(ws.model() / "config.json", model / "config.json")
    state = {"weights": torch.zeros(2), "payload": Outcome}  # any pickled object
    torch.save(state, model / "pytorch_model.bin")
    argv = ["--model-dir", str(model), "--tokenizer", str(ws.tokenizer())]
    argv += ["--cuts", str(ws.cuts_with_features()), "--out-dir", str(d / "cache")]
    return argv + ["--no-progress"], [str(model), "pytorch_model.bin", "not loaded"]


CASES = [
    Case("corrupt audio (random bytes in a .wav)", "validate_data", corrupt_audio),
    Case("zero-length audio", "validate_data", zero_length_audio),
    Case("8 kHz audio where 16 kHz is expected", "validate_data", wrong_rate_validate),
    Case("8 kHz audio where 16 kHz is expected", "compute_features", wrong_rate_features),
    Case("truncated manifest (.jsonl.gz cut short)", "compute_features", truncated_manifest),
    Case("manifest line that is not JSON", "subsample_cuts", corrupt_json_manifest),
    Case("non-UTF-8 transcript file", "validate_data", non_utf8_validate),
    Case("non-UTF-8 text for a BPE model", "prepare_lang", non_utf8_text),
    Case("empty transcript", "validate_data", empty_transcript),
    Case("missing features archive", "cache_teacher", missing_features),
    Case("text with out-of-lexicon words only", "make_den_graph", oov_only_text),
    Case("config value of the wrong type (epochs: three)", "whisper_train", config_wrong_type),
    Case("option out of range (--lr -1)", "whisper_train", negative_lr),
    Case("CLSR option out of range (skip_gate_prob 1.5)", "whisper_train", clsr_out_of_range),
    Case("KD teacher with another vocabulary", "whisper_train", teacher_other_vocab),
    Case("truncated manifest (.jsonl.gz cut short)", "whisper_train", truncated_train_cuts),
    Case("truncated manifest (.jsonl.gz cut short)", "whisper_decode", truncated_decode_cuts),
    Case(
        "teacher and tokenizer of different vocabularies",
        "cache_teacher",
        cache_teacher_other_tokenizer,
    ),  # fmt: skip
    Case("pickled checkpoint (pytorch_model.bin) as a model", "cache_teacher", pickled_checkpoint),
]


def run_cases(work_dir: Path, cases: list[Case] = CASES) -> list[Outcome]:
    """Build and run every case under ``work_dir``; one Outcome each, in order."""
    workspace = Workspace(work_dir)
    outcomes = []
    for index, case in enumerate(cases):
        directory = work_dir / f"case{index:02d}"
        directory.mkdir(parents=True)
        argv, expected = case.build(workspace, directory)
        code, message = run_tool(case.tool, argv)
        outcomes.append(Outcome(case, code, message, expected))
    return outcomes


def markdown_table(outcomes: list[Outcome], root: Path | None = None) -> str:
    """``| bad input | tool | exit | message |`` (paths under ``root`` shown relative to it)."""
    lines = ["| bad input | tool | exit | message |", "|---|---|---|---|"]
    for o in outcomes:
        message = o.message.replace(f"{root}/", "") if root is not None else o.message
        flag = "" if o.names_the_culprit else " **(unclear)**"
        message = message.replace("|", "\\|")
        lines.append(f"| {o.case.name} | `{o.case.tool}` | {o.exit_code} | `{message}`{flag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work-dir", type=Path, default=None, help="default: a temporary dir")
    parser.add_argument("--only", nargs="+", default=None, help="tools to run cases of")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.only is None or c.tool in args.only]
    with contextlib.ExitStack() as stack:
        work_dir = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        outcomes = run_cases(work_dir, cases)
        print(markdown_table(outcomes, work_dir))
    return 0 if all(o.names_the_culprit for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
