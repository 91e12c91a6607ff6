"""The inputs of the DistillW2V2 report and the numbers of its tables.

* ``<system_dir>/system.json`` of every system (the recipe): ``name``, ``role`` (teacher | step1 |
  step2 | single_step), ``arch`` (``T1``, ``S5``, ``tiny_student`` …), ``variant`` (teacher | sn |
  ss), ``history`` and ``chunk`` (frames; null = unbounded), ``alpha``, ``beta``, ``setting``
  (``M1`` … or null), ``teacher`` (the system it learned from) and ``params`` (total count);
* decode dirs of ``python -m speechkd.bin.w2v2_decode`` beside it: ``decode_<set>/`` (best path),
  ``decode_<set>_lm/`` (lexicon beam search with a word n-gram LM), and for chunk-streaming
  systems ``decode_<set>_streaming/`` (``_streaming_lm``), each with ``scores-<set>.json`` and
  ``decode-<set>.json`` (wall time, real-time factor);
* the JSON of ``python -m speechkd.bin.rtf --json`` (architectures, parameters, CPU RTF).

Error rates are pooled over the set (``totals`` of the scores file: errors / reference tokens):
WER where the decoder scored words (``scored_units: words``), PER where it scored phones; a file
without ``scored_units`` (``speechkd.bin.score``) is labelled by its metric (WER / CER). A column
never mixes units: a set whose systems scored different units gets one column per unit.
The best-path result of a system is that of ``decode_<set>/``; a chunk-streaming system's
chunk-by-chunk decode (``decode_<set>_streaming/``) stands in for it only where ``decode_<set>/``
is missing. Latency is the average look-ahead of chunk-wise processing: a frame of a chunk of
``C`` frames waits on average ``C / 2`` frames, so ``latency = C / 2 × 20 ms`` (wav2vec2's CNN
emits a frame every 320 samples at 16 kHz); the paper's chunk of 48 frames gives its 480 ms.
Comparisons between systems (:func:`compare`) leave out a column where the teacher or both
systems are at chance (:func:`speechkd.eval.report_kit.degenerate_reason`). RESULTS.json rows:
:func:`result_rows`.
"""

from __future__ import annotations

import gzip
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError, DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.report_kit import load_json_object
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names
from speechkd.eval.rtf import PAPER_TABLE1
from speechkd.eval.wer import ErrorCounts

INF = "∞"
SAMPLE_RATE = 16000
CNN_STRIDES = (5, 2, 2, 2, 2, 2, 2)  # wav2vec2's feature encoder: 320 samples per frame
FRAME_MS = 1000.0 * math.prod(CNN_STRIDES) / SAMPLE_RATE  # 20 ms
ROLES = ("teacher", "step1", "step2", "single_step")
VARIANTS = ("teacher", "sn", "ss")
BEST_PATH = "best_path"
LM = "lm"
DECODERS = (BEST_PATH, LM)
UNIT_LABELS = {"words": "WER", "phones": "PER"}
METRIC_LABELS = {"wer": "WER", "cer": "CER"}
LABEL_ORDER = ("WER", "PER", "CER")
ROLE_TITLES = {
    "teacher": "Teacher",
    "step1": "First step (T → SN)",
    "step2": "Second step (SN → SS)",
    "single_step": "Single step (T → SS)",
}
PAPER_SETS = ("Gigaspeech", "in-house")
# DistillW2V2 paper, Table 2: WER (%) per role on (Gigaspeech, in-house).
PAPER_TABLE2: dict[str, tuple[float, float]] = {
    "teacher": (11.84, 17.56),
    "single_step": (15.58, 22.36),
    "step1": (12.37, 18.41),
    "step2": (12.90, 19.25),
}
# DistillW2V2 paper, Table 3: (alpha, beta, WER Gigaspeech, WER in-house) of the first step.
PAPER_TABLE3: dict[str, tuple[float, float, float, float]] = {
    "M1": (1.0, 0.0, 14.29, 20.83),
    "M2": (1.0, 1.0, 13.54, 20.22),
    "M3": (0.8, 1.0, 12.35, 18.60),
    "M4": (0.8, 0.8, 12.37, 18.41),
}
_REQUIRED = ("name", "role", "arch", "variant", "params")


# ---------------------------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SystemInfo:
    """One system of the report: its label (``--system NAME``) and its ``system.json``."""

    label: str
    name: str
    role: str
    arch: str
    variant: str
    params: int
    directory: Path
    history: int | None = None
    chunk: int | None = None
    alpha: float | None = None
    beta: float | None = None
    setting: str | None = None
    teacher: str | None = None

    @property
    def context(self) -> str:
        """``(hist, chunk)`` in frames, ∞ for unbounded."""
        if self.chunk is None:
            return f"({INF}, {INF})"
        hist = INF if self.history is None else str(self.history)
        return f"({hist}, {self.chunk})"

    @property
    def latency_ms(self) -> float | None:
        return look_ahead_ms(self.chunk)


def look_ahead_ms(chunk: int | None, frame_ms: float = FRAME_MS) -> float | None:
    """Average look-ahead of chunks of ``chunk`` frames: ``chunk / 2 × frame_ms`` (48 → 480 ms);
    None for full context."""
    return None if chunk is None else chunk * frame_ms / 2.0


def _int_or_none(path: Path, data: dict, key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DataError(f"{path}: field {key!r} must be a positive integer or null, got {value!r}")
    return value


def _weight_or_none(path: Path, data: dict, key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise DataError(f"{path}: field {key!r} must be a number in [0, 1] or null, got {value!r}")
    return float(value)


def _str_or_none(path: Path, data: dict, key: str, required: bool = False) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def load_system(label: str, directory: str | os.PathLike) -> SystemInfo:
    """The ``system.json`` of ``directory``, checked; DataError naming the file and field."""
    directory = Path(directory)
    path = directory / "system.json"
    data = load_json_object(path, "system description")
    absent = [key for key in _REQUIRED if key not in data]
    if absent:
        raise DataError(f"{path}: missing field(s) {', '.join(absent)}")
    role = data["role"]
    if role not in ROLES:
        raise DataError(f"{path}: field 'role' must be one of {ROLES}, got {role!r}")
    variant = data["variant"]
    if variant not in VARIANTS:
        raise DataError(f"{path}: field 'variant' must be one of {VARIANTS}, got {variant!r}")
    params = data["params"]
    if isinstance(params, bool) or not isinstance(params, int) or params < 0:
        raise DataError(f"{path}: field 'params' must be a non-negative integer, got {params!r}")
    info = SystemInfo(
        label=label,
        name=str(_str_or_none(path, data, "name", required=True)),
        role=role,
        arch=str(_str_or_none(path, data, "arch", required=True)),
        variant=variant,
        params=params,
        directory=directory,
        history=_int_or_none(path, data, "history"),
        chunk=_int_or_none(path, data, "chunk"),
        alpha=_weight_or_none(path, data, "alpha"),
        beta=_weight_or_none(path, data, "beta"),
        setting=_str_or_none(path, data, "setting"),
        teacher=_str_or_none(path, data, "teacher"),
    )
    if (variant == "ss") != (info.chunk is not None):
        raise DataError(
            f"{path}: variant {variant!r} with chunk {info.chunk!r}: the chunk-streaming "
            "variant 'ss' needs a chunk size, the others have none (full context)"
        )
    if role in ("step2", "single_step") and variant != "ss":
        raise DataError(f"{path}: role {role!r} is a streaming student: variant must be 'ss'")
    if info.setting is not None and (info.alpha is None or info.beta is None):
        raise DataError(f"{path}: setting {info.setting!r} needs numeric 'alpha' and 'beta'")
    return info


# ---------------------------------------------------------------------------------------------
# Decode results
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodeResult:
    """The pooled error rate of one system on one set with one decoder."""

    rate: float
    label: str  # WER | PER | CER
    decoder: str  # best_path | lm
    streaming: bool
    lm: str | None
    lm_order: int | None
    path: Path
    snt: int
    tokens: int
    rtf: float | None = None
    device: str | None = None
    decode_seconds: float | None = None
    audio_seconds: float | None = None
    languages: tuple[str, ...] = ()

    @property
    def language(self) -> str:
        """The language scored, ``all`` when several (or none) are recorded."""
        return self.languages[0] if len(self.languages) == 1 else ALL


def decode_dir(system_dir: str | os.PathLike, set_name: str, decoder: str, streaming: bool) -> Path:
    """``decode_<set>[_streaming][_lm]`` of a system."""
    if decoder not in DECODERS:
        raise ConfigError(f"decoder must be one of {DECODERS}, got {decoder!r}")
    suffix = ("_streaming" if streaming else "") + ("_lm" if decoder == LM else "")
    return Path(system_dir) / f"decode_{set_name}{suffix}"


def arpa_order(path: str | os.PathLike) -> int | None:
    """Order of an ARPA LM (plain or .gz) from its ``\\data\\`` header; None if unreadable."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    order = 0
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                match = re.match(r"\s*ngram\s+(\d+)\s*=", line)
                if match:
                    order = max(order, int(match.group(1)))
                elif line.startswith("\\1-grams:"):
                    break
    except (OSError, UnicodeDecodeError, EOFError):
        return None
    return order or None


def _rate_label(path: Path, payload: dict) -> str:
    units = payload.get("scored_units")
    if units is not None:
        if units not in UNIT_LABELS:
            raise DataError(
                f"{path}: field 'scored_units' must be one of {tuple(UNIT_LABELS)}, got {units!r}"
            )
        if payload.get("metric") != "wer":
            raise DataError(f"{path}: scored {units} with metric {payload.get('metric')!r}")
        return UNIT_LABELS[units]
    metric = payload.get("metric")
    if metric not in METRIC_LABELS:
        raise DataError(f"{path}: metric must be one of {tuple(METRIC_LABELS)}, got {metric!r}")
    return METRIC_LABELS[metric]


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def load_decode(
    system_dir: str | os.PathLike, set_name: str, decoder: str, streaming: bool = False
) -> DecodeResult | None:
    """The result in ``decode_<set>[_streaming][_lm]/scores-<set>.json``; None when that file
    does not exist, DataError when it is not a valid scores file of this set and decoder (or a
    ``_streaming`` dir holds a decode that was not streamed)."""
    directory = decode_dir(system_dir, set_name, decoder, streaming)
    path = directory / f"scores-{set_name}.json"
    if not path.exists():
        return None
    payload = load_json_object(path, "scores file")
    if payload.get("set") != set_name:
        raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
    label = _rate_label(path, payload)
    expected = "lexicon" if decoder == LM else "greedy"
    if "decoder" in payload and payload["decoder"] != expected:
        raise DataError(
            f"{path}: field 'decoder' is {payload['decoder']!r}, a {directory.name} dir holds "
            f"{expected!r} decoding"
        )
    streamed = bool(payload.get("streaming", streaming))
    if streaming and not streamed:
        raise DataError(
            f"{path}: field 'streaming' is {payload['streaming']!r}, a {directory.name} dir holds "
            "chunk-by-chunk streaming decoding"
        )
    totals = payload.get("totals")
    if not isinstance(totals, dict):
        raise DataError(f"{path}: field 'totals' missing")
    try:
        counts = ErrorCounts.from_dict(totals)
    except (KeyError, TypeError) as err:
        raise DataError(f"{path}: 'totals' lacks the count {err}") from None
    lm = payload.get("lm") if decoder == LM else None
    lm = lm if isinstance(lm, str) and lm else None
    timing: dict[str, Any] = {}
    decode_json = directory / f"decode-{set_name}.json"
    if decode_json.is_file():
        timing = load_json_object(decode_json, "decode record")
    return DecodeResult(
        rate=counts.rate,
        label=label,
        decoder=decoder,
        streaming=streamed,
        lm=lm,
        lm_order=arpa_order(lm) if lm else None,
        path=path,
        snt=counts.snt,
        tokens=counts.wrd,
        rtf=_number(timing.get("rtf", payload.get("rtf"))),
        device=timing.get("device", payload.get("device")),
        decode_seconds=_number(timing.get("decode_seconds", payload.get("decode_seconds"))),
        audio_seconds=_number(timing.get("audio_seconds")),
        languages=tuple(str(x) for x in payload.get("languages") or ()),
    )


@dataclass
class ReportData:
    """Everything the report shows, loaded and checked."""

    systems: list[SystemInfo]
    sets: list[str]
    # (label, set, decoder) -> the result shown (decode_<set>[_lm], or the streaming one)
    results: dict[tuple[str, str, str], DecodeResult] = field(default_factory=dict)
    # (label, set, decoder) -> chunk-by-chunk streaming result of a streaming system
    streaming: dict[tuple[str, str, str], DecodeResult] = field(default_factory=dict)
    # (label, set, decoder) -> the decode dir(s) looked for, where nothing was found
    missing: dict[tuple[str, str, str], list[Path]] = field(default_factory=dict)
    rtf: dict | None = None
    rtf_path: Path | None = None

    def system(self, label: str) -> SystemInfo:
        return next(s for s in self.systems if s.label == label)

    def resolve(self, name: str | None) -> SystemInfo | None:
        """The system called ``name`` (its label, else its ``system.json`` name)."""
        if name is None:
            return None
        for s in self.systems:
            if s.label == name:
                return s
        return next((s for s in self.systems if s.name == name), None)


def collect(
    systems: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    rtf: str | os.PathLike | None = None,
) -> ReportData:
    """Load the systems (label → system dir, in table order), their decodes and the RTF JSON.

    Every system is expected to have a best-path result on every set, and an LM result on every
    set that some system was decoded with an LM on; an absent one is recorded as missing.
    """
    if not sets:
        raise ConfigError("--sets: give at least one test set")
    if len(set(sets)) != len(sets):
        raise ConfigError(f"--sets: a set is given twice: {list(sets)}")
    infos = [load_system(label, directory) for label, directory in systems.items()]
    data = ReportData(infos, list(sets))
    for decoder in DECODERS:
        for set_name in sets:
            found: dict[str, DecodeResult | None] = {}
            for s in infos:
                result = load_decode(s.directory, set_name, decoder)
                stream = (
                    load_decode(s.directory, set_name, decoder, True)
                    if s.chunk is not None
                    else None
                )
                if stream is not None:
                    data.streaming[(s.label, set_name, decoder)] = stream
                found[s.label] = result or stream
            if decoder == LM and not any(found.values()):
                continue
            for s in infos:
                key = (s.label, set_name, decoder)
                if found[s.label] is not None:
                    data.results[key] = found[s.label]  # type: ignore[assignment]
                else:
                    looked = [decode_dir(s.directory, set_name, decoder, False)]
                    if s.chunk is not None:
                        looked.append(decode_dir(s.directory, set_name, decoder, True))
                    data.missing[key] = looked
    if rtf is not None:
        data.rtf_path = Path(rtf)
        data.rtf = load_rtf(rtf)
    return data


_RTF_ROW_INT = ("cnn_channels", "encoder_dim", "ffn_dim", "blocks", "params")
_RTF_ROW_OPT = ("params_paper", "rtf", "rtf_paper", "rtf_streaming", "chunk_ms_short")


def load_rtf(path: str | os.PathLike) -> dict:
    """The JSON of ``speechkd.bin.rtf --json``, checked (``environment``, ``settings``, rows)."""
    path = Path(path)
    payload = load_json_object(path, "RTF table (speechkd.bin.rtf --json)")
    for key in ("environment", "settings"):
        if not isinstance(payload.get(key), dict):
            raise DataError(f"{path}: field {key!r} missing")
    rows = payload.get("rows")
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: field 'rows' missing or empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("model"), str):
            raise DataError(f"{path}: rows[{i}] needs a string 'model'")
        for key in _RTF_ROW_INT:
            value = row.get(key)
            if isinstance(value, bool) or not isinstance(value, int):
                raise DataError(f"{path}: rows[{i}] ({row['model']}): {key!r} must be an integer")
        for key in _RTF_ROW_OPT:
            if row.get(key) is not None and _number(row.get(key)) is None:
                raise DataError(f"{path}: rows[{i}] ({row['model']}): {key!r} must be a number")
    return payload


# ---------------------------------------------------------------------------------------------
# Columns and comparisons
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """An error-rate column: a set, a decoder and the rate's label (never mixed)."""

    set_name: str
    decoder: str
    label: str


def table_columns(data: ReportData, labels: Sequence[str]) -> list[Column]:
    """Columns for the rows ``labels``: per set (in order), best path then LM, one per rate
    label present (WER, PER, CER). A best-path column without any result is kept (all "–");
    an LM column only exists where some row has an LM result."""
    columns: list[Column] = []
    for set_name in data.sets:
        for decoder in DECODERS:
            keys = [(label, set_name, decoder) for label in labels]
            present = {data.results[k].label for k in keys if k in data.results}
            if not present and decoder == BEST_PATH:
                present = {"error rate"}
            ordered = [x for x in LABEL_ORDER if x in present] + sorted(present - set(LABEL_ORDER))
            columns += [Column(set_name, decoder, x) for x in ordered]
    return columns


def cell_result(data: ReportData, label: str, column: Column) -> DecodeResult | None:
    """The row's result in ``column`` (None when absent or scored in other units)."""
    result = data.results.get((label, column.set_name, column.decoder))
    return result if result is not None and result.label == column.label else None


def decoder_title(data: ReportData, column: Column, labels: Sequence[str]) -> str:
    """``best path``, ``4-gram LM`` (one known order), ``n-gram LM`` or ``lexicon, no LM``."""
    if column.decoder == BEST_PATH:
        return "best path"
    results = [r for r in (cell_result(data, x, column) for x in labels) if r is not None]
    if results and all(r.lm is None for r in results):
        return "lexicon, no LM"
    orders = {r.lm_order for r in results}
    if len(orders) == 1 and None not in orders:
        return f"{orders.pop()}-gram LM"
    return "n-gram LM"


@dataclass(frozen=True)
class Comparison:
    """System ``ours`` against ``ref`` in one column (lower is better); ``reason``: why the
    column says nothing (the teacher or both systems at chance), None when it counts."""

    column: Column
    ours: str
    ref: str
    ours_rate: float
    ref_rate: float
    reason: str | None = None

    @property
    def better(self) -> bool:
        return kit.beats(self.ours_rate, self.ref_rate, self.column.label)

    @property
    def relative(self) -> float | None:
        """Relative reduction of the error rate, in percent of ``ref`` (None from a reference
        at chance)."""
        change = kit.relative_change(self.ours_rate, self.ref_rate, self.column.label)
        return None if change is None else -change


def compare(data: ReportData, ours: str, ref: str, columns: Sequence[Column]) -> list[Comparison]:
    """Comparisons in every column where both systems have a finite result, each with the
    reason it has no verdict (the teacher of the column or both systems at chance)."""
    teacher = next((s.label for s in data.systems if s.role == "teacher"), None)
    out = []
    for column in columns:
        a, b = cell_result(data, ours, column), cell_result(data, ref, column)
        if a is not None and b is not None and math.isfinite(a.rate) and math.isfinite(b.rate):
            t = cell_result(data, teacher, column) if teacher not in (None, ours, ref) else None
            pair = {ours: a.rate, ref: b.rate}
            top = (str(teacher), t.rate) if t is not None else None
            reason = kit.degenerate_reason(column.label, pair, top)
            out.append(Comparison(column, ours, ref, a.rate, b.rate, reason))
    return out


def set_verdicts(comparisons: Sequence[Comparison], sets: Sequence[str]) -> dict[str, str | None]:
    """Per set: "yes" (better in every compared column), "no" (in none), "mixed", the no-verdict
    text (every column degenerate), or None (no column compared)."""
    out: dict[str, str | None] = {}
    for set_name in sets:
        own = [c for c in comparisons if c.column.set_name == set_name]
        wins = [c.better for c in own if c.reason is None]
        if not own:
            out[set_name] = None
        elif not wins:
            out[set_name] = kit.NO_VERDICT
        else:
            out[set_name] = "yes" if all(wins) else "no" if not any(wins) else "mixed"
    return out


@dataclass
class PairResult:
    """A system compared with a reference system, per column and per set."""

    ours: str
    ref: str
    comparisons: list[Comparison]
    verdicts: dict[str, str | None]


def table2_rows(data: ReportData) -> list[str]:
    """Labels of Table 2 in order: teachers, the first-step systems that a second-step system
    learned from (all first-step systems when none is named), second-step and single-step
    students."""
    parents = {
        p.label for s in data.systems if s.role == "step2" and (p := data.resolve(s.teacher))
    }
    rows = []
    for s in data.systems:
        if s.role == "step1" and parents and s.label not in parents:
            continue
        rows.append(s.label)
    return rows


def two_step_pairs(data: ReportData) -> list[tuple[str, str]]:
    """(second-step, single-step) labels with the same architecture and (hist, chunk)."""
    return [
        (a.label, b.label)
        for a in data.systems
        if a.role == "step2"
        for b in data.systems
        if b.role == "single_step" and (a.arch, a.history, a.chunk) == (b.arch, b.history, b.chunk)
    ]


def compare_two_step(data: ReportData) -> list[PairResult]:
    """Every second-step student against the single-step student of the same configuration."""
    columns = table_columns(data, table2_rows(data))
    out = []
    for ours, ref in two_step_pairs(data):
        comparisons = compare(data, ours, ref, columns)
        out.append(PairResult(ours, ref, comparisons, set_verdicts(comparisons, data.sets)))
    return out


def ablation_rows(data: ReportData) -> list[str]:
    """Labels of Table 3: teachers, then the first-step systems that have a setting."""
    return [
        s.label
        for s in data.systems
        if s.role == "teacher" or (s.role == "step1" and s.setting is not None)
    ]


def mse_reference(data: ReportData) -> SystemInfo | None:
    """The MSE-only first-step system (β = 0): the one whose setting is M1, else the first."""
    candidates = [
        s for s in data.systems if s.role == "step1" and s.setting is not None and s.beta == 0
    ]
    return next((s for s in candidates if s.setting == "M1"), candidates[0] if candidates else None)


def compare_lfmmi(data: ReportData) -> list[PairResult]:
    """Every first-step setting with an LF-MMI term (β > 0) against the MSE-only one."""
    ref = mse_reference(data)
    if ref is None:
        return []
    columns = table_columns(data, ablation_rows(data))
    out = []
    for s in data.systems:
        if s.role == "step1" and s.setting is not None and s.beta is not None and s.beta > 0:
            comparisons = compare(data, s.label, ref.label, columns)
            out.append(
                PairResult(s.label, ref.label, comparisons, set_verdicts(comparisons, data.sets))
            )
    return out


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

# the error-rate metric of a (decoder, rate label): the paper's pairs plain, others qualified
RESULT_METRICS = {(BEST_PATH, "PER"): "per", (LM, "WER"): "wer"}
_RTF_METRICS = {
    "cnn_channels": "cnn_dim",
    "encoder_dim": "encoder_dim",
    "ffn_dim": "ffn_dim",
    "blocks": "blocks",
    "params": "params",
    "params_paper": "params_paper",
    "rtf": "rtf",
    "rtf_paper": "rtf_paper",
    "rtf_streaming": "rtf_streaming",
    "chunk_ms_short": "ms_per_chunk",
}


def result_metric(decoder: str, label: str) -> str:
    """``per`` (best path, phones), ``wer`` (lexicon + LM, words), else ``<rate>_<decoder>``."""
    return RESULT_METRICS.get((decoder, label), f"{label.lower()}_{decoder}")


def result_system_names(systems: Sequence[SystemInfo]) -> dict[str, str]:
    """Stable names: ``teacher``; a first-step student its setting (``m1`` … ``m4``); ``ss``
    (second step); ``single_step``; any other (or colliding) system its label lower-case."""
    proposed = {}
    for s in systems:
        if s.role == "teacher":
            proposed[s.label] = "teacher"
        elif s.role == "step1" and s.setting is not None:
            proposed[s.label] = stable_name(s.setting)
        elif s.role == "step2":
            proposed[s.label] = "ss"
        elif s.role == "single_step":
            proposed[s.label] = "single_step"
        else:
            proposed[s.label] = stable_name(s.label)
    return unique_names(proposed)


def _rtf_rows(rows: ResultRows, data: ReportData) -> None:
    if data.rtf is None:
        return
    by_model = {r["model"]: r for r in data.rtf["rows"]}
    teacher = next((s for s in data.systems if s.role == "teacher"), None)
    ref_model = teacher.arch if teacher and teacher.arch in by_model else None
    ref = by_model.get(ref_model or "T1")
    for r in data.rtf["rows"]:
        system = f"arch_{stable_name(r['model'])}"
        for key, metric in _RTF_METRICS.items():
            rows.add(system, ALL, ALL, metric, _number(r.get(key)))
        if r.get("params_paper"):
            diff = 100.0 * (r["params"] - r["params_paper"]) / r["params_paper"]
            rows.add(system, ALL, ALL, "params_paper_diff_pct", diff)
        if ref and r["params"]:
            rows.add(system, ALL, ALL, "times_smaller_than_ref", ref["params"] / r["params"])
        if ref and ref.get("rtf") and r.get("rtf"):
            rows.add(system, ALL, ALL, "times_faster_than_ref", ref["rtf"] / r["rtf"])


def decode_rtf(data: ReportData, label: str) -> tuple[float | None, list[str]]:
    """Decode time / audio over the best-path decodes of all sets, and their devices."""
    results = [data.results.get((label, s, BEST_PATH)) for s in data.sets]
    timed = [r for r in results if r and r.decode_seconds is not None and r.audio_seconds]
    if not timed:
        return None, []
    rtf = sum(r.decode_seconds or 0.0 for r in timed) / sum(r.audio_seconds or 0.0 for r in timed)
    return rtf, sorted({str(r.device) for r in timed if r.device})


def result_rows(data: ReportData) -> ResultRows:
    """The numbers of every table: the RTF table's architectures (``arch_<model>``); per system
    its size, context and decode RTF (set ``all``), α and β, and its error rates per set
    (:func:`result_metric`; language: the one scored), the chunk-by-chunk streaming ones as
    ``<metric>_streaming``."""
    names = result_system_names(data.systems)
    rows = ResultRows()
    _rtf_rows(rows, data)
    teacher = next((s for s in data.systems if s.role == "teacher"), None)
    for s in data.systems:
        system = names[s.label]
        rows.add(system, ALL, ALL, "params", s.params)
        paper = PAPER_TABLE1.get(s.arch)
        rows.add(system, ALL, ALL, "params_paper", paper[0] if paper else None)
        if teacher and s.params:
            rows.add(system, ALL, ALL, "times_smaller_than_teacher", teacher.params / s.params)
        rows.add(system, ALL, ALL, "history_frames", s.history)
        rows.add(system, ALL, ALL, "chunk_frames", s.chunk)
        rows.add(system, ALL, ALL, "latency_ms", s.latency_ms)
        rows.add(system, ALL, ALL, "alpha", s.alpha)
        rows.add(system, ALL, ALL, "beta", s.beta)
        rows.add(system, ALL, ALL, "decode_rtf", decode_rtf(data, s.label)[0])
    for (label, set_name, decoder), r in data.results.items():
        rows.add(names[label], set_name, r.language, result_metric(decoder, r.label), r.rate)
    for (label, set_name, decoder), r in data.streaming.items():
        metric = result_metric(decoder, r.label) + "_streaming"
        rows.add(names[label], set_name, r.language, metric, r.rate)
        rtf_metric = "decode_rtf_streaming" + ("_lm" if decoder == LM else "")
        rows.add(names[label], set_name, r.language, rtf_metric, r.rtf)
    return rows
