"""The inputs of the joint speech/text ST KD report and the numbers of its tables.

* ``<system_dir>/system.json``: ``name``, ``role`` (teacher | c | kd | scheme | finetune),
  ``arch`` (conf/st_kd/arch file), ``depths`` (``S-T-D`` layers: speech encoder, text encoder,
  decoder), ``init`` (teacher | pretrained: how a student was initialised), ``scheme`` (the
  conf/st_kd/schemes file of a KD student, or the training scheme module | task | all), ``base``
  (the system an M* was fine-tuned from) and ``checkpoint``;
* ``<system_dir>/model.json`` (optional, written by the decoding): ``params`` and measured
  ``depths``;
* ``<system_dir>/decode_<set>_{sph,txt}/scores-<set>.json``: BLEU (sacrebleu) of the speech and
  of the text input.

Labels follow the paper: ``B``; ``C: 6-6-6 (fine-tuned)`` for a student initialised from the
fine-tuned teacher, ``(pre-trained)`` from wav2vec 2.0 + mBART; ``M: L_kd_res(enc)`` … from the
KD terms of the scheme file; ``M: task`` for a training scheme; ``M*: …`` for a fine-tuned one.
Degradation is ``100 (B - X) / B``. The paper's numbers (MuST-C tst-COMMON, 12-12-12 → 6-6-6)
stand beside each system with a counterpart; the teacher's BLEU[sph] is Table 4's 28.38 (Table 3
prints 29.75, but its degradations are computed from 28.38). RESULTS.json rows:
:func:`result_rows`; each system's ``results_meta.json``: :func:`write_results_meta`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speechkd.errors import DataError
from speechkd.eval.report_kit import DASH, load_json_object
from speechkd.eval.results_json import ALL, ResultRows, stable_name, unique_names
from speechkd.utils.atomic import atomic_write_text

ROLES = ("teacher", "c", "kd", "scheme", "finetune")
INPUTS = ("sph", "txt")
INITS = {"teacher": "fine-tuned", "pretrained": "pre-trained"}
SCHEME_DIR = Path(__file__).resolve().parents[2] / "conf" / "st_kd" / "schemes"
KD_TERMS = ("res_enc", "res_dec", "feat", "rel")
# The paper's BLEU (speech input, text input) on MuST-C v2 tst-COMMON.
PAPER_SET = "tst-COMMON"
PAPER_TEACHER = (28.38, 32.94)
PAPER_C: dict[tuple[str, str], tuple[float, float]] = {  # Table 3: (depths, init)
    ("6-6-6", "teacher"): (23.1, 31.18),
    ("6-6-6", "pretrained"): (23.34, 30.78),
    ("8-8-2", "pretrained"): (22.97, 28.6),
}
PAPER_KD: dict[str, tuple[float, float]] = {  # Table 4 (kd_all: the row "M", every KD term)
    "kd_all": (23.24, 31.03),
    "kd_res_dec": (23.26, 31.22),
    "kd_res_enc": (23.78, 31.31),
    "kd_feat": (23.69, 31.05),
    "kd_rel": (21.66, 29.98),
    "kd_res": (24.72, 32.15),
    "kd_res_enc_feat": (24.31, 31.34),
    "kd_res_enc_avgfeat": (24.14, 31.6),
    "kd_res_feat": (24.38, 31.58),
}
PAPER_SCHEME: dict[str, tuple[float, float]] = {  # Table 5
    "module": (24.47, 31.77),
    "task": (25.11, 31.69),
    "all": (24.4, 31.93),
}
PAPER_MSTAR: dict[str, tuple[float, float]] = {  # Tables 4 and 5: M* of a KD system / scheme
    "kd_res": (25.33, 32.07),
    "module": (24.78, 31.64),
    "task": (25.24, 31.67),
    "all": (25.16, 31.72),
}


@dataclass(frozen=True)
class Score:
    """BLEU of one system on one set and input."""

    bleu: float
    signature: str
    snt: int
    path: Path


@dataclass
class StSystem:
    """One system of the report with its scores ``{(set, input): Score}``."""

    label: str
    name: str
    role: str
    arch: str
    depths: str
    init: str | None
    scheme: str | None
    base: str | None
    directory: Path
    params: int | None = None
    kd_terms: tuple[str, ...] = ()
    kd_feat_reduce: str = "sum"
    scores: dict[tuple[str, str], Score] = field(default_factory=dict)

    def bleu(self, set_name: str, modality: str) -> float | None:
        score = self.scores.get((set_name, modality))
        return None if score is None else score.bleu


def _text(path: Path, data: Mapping[str, Any], key: str, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{path}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def scheme_terms(
    scheme: str, scheme_dir: str | os.PathLike = SCHEME_DIR
) -> tuple[tuple[str, ...], str]:
    """(KD terms, feature reduction) of ``<scheme_dir>/<scheme>.yaml`` (its criterion options
    ``kd_terms`` and ``kd_feat_reduce``; no terms when ``kd_weight`` is 0)."""
    path = Path(scheme_dir) / f"{scheme}.yaml"
    if not path.is_file():
        raise DataError(f"{path}: scheme file of KD student {scheme!r} not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise DataError(f"{path}: cannot read YAML ({err})") from None
    criterion = config.get("criterion") or {}
    if not isinstance(criterion, dict):
        raise DataError(f"{path}: 'criterion' must be a mapping")
    if not criterion.get("kd_weight"):
        return (), "sum"
    raw = criterion.get("kd_terms", "")
    terms = tuple(t.strip() for t in (raw.split(",") if isinstance(raw, str) else raw) if t)
    unknown = sorted(set(terms) - set(KD_TERMS))
    if unknown:
        raise DataError(f"{path}: unknown kd_terms {unknown} (known: {', '.join(KD_TERMS)})")
    return tuple(t for t in KD_TERMS if t in terms), str(criterion.get("kd_feat_reduce", "sum"))


def load_scores(directory: Path, set_name: str) -> dict[tuple[str, str], Score]:
    """The BLEU of ``decode_<set>_{sph,txt}/scores-<set>.json`` that exist."""
    out = {}
    for modality in INPUTS:
        path = directory / f"decode_{set_name}_{modality}" / f"scores-{set_name}.json"
        if not path.exists():
            continue
        payload = load_json_object(path, "scores file")
        if payload.get("metric") != "bleu":
            raise DataError(f"{path}: metric is {payload.get('metric')!r}, expected 'bleu'")
        if payload.get("set") != set_name:
            raise DataError(f"{path}: field 'set' is {payload.get('set')!r}, expected {set_name!r}")
        if payload.get("input", modality) != modality:
            raise DataError(f"{path}: field 'input' is {payload['input']!r}, expected {modality!r}")
        score = payload.get("score")
        if isinstance(score, bool) or not isinstance(score, int | float):
            raise DataError(f"{path}: field 'score' must be a number, got {score!r}")
        out[(set_name, modality)] = Score(
            float(score), str(payload.get("signature", DASH)), int(payload.get("snt", 0)), path
        )
    return out


def load_system(
    label: str,
    directory: str | os.PathLike,
    sets: Sequence[str],
    scheme_dir: str | os.PathLike = SCHEME_DIR,
) -> StSystem:
    """``system.json`` (+ ``model.json``) and the scores of ``directory``, checked."""
    directory = Path(directory)
    path = directory / "system.json"
    data = load_json_object(path, "system description")
    role = data.get("role")
    if role not in ROLES:
        raise DataError(f"{path}: field 'role' must be one of {ROLES}, got {role!r}")
    init = _text(path, data, "init", required=False)
    if init is not None and init not in INITS:
        raise DataError(f"{path}: field 'init' must be one of {tuple(INITS)}, got {init!r}")
    system = StSystem(
        label=label,
        name=str(_text(path, data, "name")),
        role=role,
        arch=str(_text(path, data, "arch")),
        depths=str(_text(path, data, "depths")),
        init=init,
        scheme=_text(path, data, "scheme", required=role in ("kd", "scheme")),
        base=_text(path, data, "base", required=role == "finetune"),
        directory=directory,
    )
    model_json = directory / "model.json"
    if model_json.exists():
        model = load_json_object(model_json, "model description")
        params = model.get("params")
        if isinstance(params, bool) or not isinstance(params, int) or params < 0:
            raise DataError(f"{model_json}: field 'params' must be a non-negative integer")
        system.params = params
        system.depths = str(model.get("depths") or system.depths)
    if role == "kd":
        system.kd_terms, system.kd_feat_reduce = scheme_terms(str(system.scheme), scheme_dir)
    for set_name in sets:
        system.scores.update(load_scores(directory, set_name))
    return system


def load_systems(
    specs: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    scheme_dir: str | os.PathLike = SCHEME_DIR,
) -> list[StSystem]:
    """Every system of ``specs`` (``{label: dir}``), in order; the M* bases resolved."""
    systems = [load_system(label, d, sets, scheme_dir) for label, d in specs.items()]
    names = {s.name for s in systems}
    for s in systems:
        if s.role == "finetune" and s.base not in names:
            raise DataError(
                f"{s.directory / 'system.json'}: base {s.base!r} is not one of the systems given"
            )
    return systems


# ---------------------------------------------------------------------------------------------
# Labels and paper counterparts
# ---------------------------------------------------------------------------------------------


def terms_label(terms: Sequence[str], feat_reduce: str = "sum") -> str:
    """``L_kd_res(enc)``, ``L_kd_res`` (encoder + decoder), ``L_kd_res(enc) + L_kd_avg(feat)`` …"""
    parts = []
    if "res_enc" in terms and "res_dec" in terms:
        parts.append("L_kd_res")
    elif "res_enc" in terms:
        parts.append("L_kd_res(enc)")
    elif "res_dec" in terms:
        parts.append("L_kd_res(dec)")
    if "feat" in terms:
        parts.append("L_kd_avg(feat)" if feat_reduce == "mean" else "L_kd_feat")
    if "rel" in terms:
        parts.append("L_kd_rel")
    return " + ".join(parts) if parts else "no KD"


def system_label(system: StSystem, by_name: Mapping[str, StSystem]) -> str:
    """The paper's notation of a system."""
    if system.role == "teacher":
        return "B"
    if system.role == "c":
        return f"C: {system.depths} ({INITS.get(system.init or '', system.init)})"
    if system.role == "kd":
        return f"M: {terms_label(system.kd_terms, system.kd_feat_reduce)}"
    if system.role == "scheme":
        return f"M: {system.scheme}"
    base = by_name[str(system.base)]
    return "M*" + system_label(base, by_name)[1:]


def paper_bleu(system: StSystem, by_name: Mapping[str, StSystem]) -> tuple[float, float] | None:
    """The paper's (BLEU[sph], BLEU[txt]) of the counterpart of ``system``, if any."""
    if system.role == "teacher":
        return PAPER_TEACHER
    if system.role == "c":
        return PAPER_C.get((system.depths, system.init or ""))
    if system.role == "kd":
        return PAPER_KD.get(str(system.scheme))
    if system.role == "scheme":
        return PAPER_SCHEME.get(str(system.scheme))
    base = by_name[str(system.base)]
    return PAPER_MSTAR.get(str(base.scheme))


def is_single_term(system: StSystem) -> bool:
    """A KD student of Table 4's ablation: one KD term, or every term (the row "M")."""
    terms = set(system.kd_terms)
    return len(terms) == 1 or terms == set(KD_TERMS)


def degradation(value: float | None, teacher: float | None) -> float | None:
    """``100 (teacher - value) / teacher``; None without both or with a zero teacher."""
    if value is None or teacher is None or teacher <= 0:
        return None
    return 100.0 * (teacher - value) / teacher


RESULT_INITS = {"teacher": "finetuned", "pretrained": "pretrained"}


def result_system_names(systems: Sequence[StSystem]) -> dict[str, str]:
    """Stable names after the paper's tables: ``b`` (the teacher); ``c_finetuned`` /
    ``c_pretrained`` (``c_<S_T_D>_<init>`` when several C share an init); a KD student its
    scheme (``kd_res`` …); a training scheme ``module`` / ``task`` / ``all``; an M* ``m_star_``
    and its base's name. Label → name."""
    by_name = {s.name: s for s in systems}
    inits = [s.init for s in systems if s.role == "c"]

    def proposed(s: StSystem) -> str:
        if s.role == "teacher":
            return "b"
        if s.role == "c" and s.init in RESULT_INITS:
            init = RESULT_INITS[s.init]
            return f"c_{init}" if inits.count(s.init) == 1 else f"c_{stable_name(s.depths)}_{init}"
        if s.role in ("kd", "scheme") and s.scheme:
            return stable_name(s.scheme)
        if s.role == "finetune" and s.base in by_name:
            return "m_star_" + proposed(by_name[str(s.base)])
        return stable_name(s.name)

    return unique_names({s.label: proposed(s) for s in systems})


def result_rows(
    systems: Sequence[StSystem],
    sets: Sequence[str],
    params: Mapping[str, Any] | None = None,
    best: Mapping[str, Any] | None = None,
    language: str = "de",
) -> ResultRows:
    """The numbers of every table: per set, ``bleu_sph`` / ``bleu_txt`` and ``degradation_sph``
    / ``degradation_txt`` (%, against B); the paper's BLEU (``paper_bleu_*`` on tst-COMMON);
    the trained systems' ``params`` and ``params_pct_of_b``; Table 1's models (``arch_<model>``);
    the dev BLEU that chose the best KD student."""
    names = result_system_names(systems)
    by_name = {s.name: s for s in systems}
    teacher = next((s for s in systems if s.role == "teacher"), None)
    rows = ResultRows()
    for s in systems:
        system = names[s.label]
        for set_name in sets:
            for modality in INPUTS:
                value = s.bleu(set_name, modality)
                rows.add(system, set_name, language, f"bleu_{modality}", value)
                if teacher is not None and s is not teacher:
                    deg = degradation(value, teacher.bleu(set_name, modality))
                    rows.add(system, set_name, language, f"degradation_{modality}", deg)
        paper = paper_bleu(s, by_name)
        for modality, value in zip(INPUTS, paper or (), strict=False):
            rows.add(system, PAPER_SET, language, f"paper_bleu_{modality}", value)
        rows.add(system, ALL, ALL, "params", s.params)
        if teacher is not None and teacher.params and s.params is not None:
            rows.add(system, ALL, ALL, "params_pct_of_b", 100.0 * s.params / teacher.params)
    for model, entry in ((params or {}).get("models") or {}).items():
        system = f"arch_{stable_name(model)}"
        counts = entry.get("counts") or {}
        for key in ("total", "embedded", "non_embedded"):
            rows.add(
                system, ALL, ALL, "params" if key == "total" else f"params_{key}", counts.get(key)
            )
        rows.add(system, ALL, ALL, "params_pct", entry.get("total_pct"))
        rows.add(system, ALL, ALL, "params_non_embedded_pct", entry.get("non_embedded_pct"))
        for key in ("total", "non_embedded"):
            value = (entry.get("paper") or {}).get(key)
            metric = "paper_params" if key == "total" else f"paper_params_{key}"
            rows.add(system, ALL, ALL, metric, None if value is None else round(value * 1e6))
    if best is not None and best.get("set", "dev") not in sets:
        for name, value in (best.get("bleu") or {}).items():
            if name in by_name:
                metric = f"bleu_{best.get('input', 'sph')}"
                rows.add(
                    names[by_name[name].label],
                    best.get("set", "dev"),
                    language,
                    metric,
                    float(value),
                )
    return rows


def training_commands(system: StSystem) -> list[str]:
    """The fairseq-train command lines of a system (the first line of each ``log/train.log`` the
    job launcher wrote; a scheme's three stages in order)."""
    logs = sorted(system.directory.glob("stage*/log/train.log"))
    logs = logs or [system.directory / "log" / "train.log"]
    commands = []
    for log in logs:
        if log.is_file():
            with open(log, encoding="utf-8", errors="replace") as f:
                first = f.readline().strip()
            if first.startswith("# "):
                commands.append(first[2:])
    return commands


def write_results_meta(systems: Sequence[StSystem], method: str = "st_kd") -> list[Path]:
    """``results_meta.json`` of every system for ``speechkd.bin.write_results`` (method, model,
    description = the paper's label, total parameters, the training commands)."""
    by_name = {s.name: s for s in systems}
    paths = []
    for s in systems:
        meta = {
            "method": method,
            "model": s.name,
            "description": system_label(s, by_name),
            "total_params": s.params,
            "commands": training_commands(s),
        }
        path = s.directory / "results_meta.json"
        atomic_write_text(path, json.dumps(meta, indent=2) + "\n")
        paths.append(path)
    return paths
