"""The joint speech/text ST KD report: model structure and initialisation without KD (the paper's
Table 3), the KD loss terms (Table 4), the training schemes (Table 5) and the parameter table
(Table 1), each with BLEU of the speech input (BLEU[sph]), of the text input (BLEU[txt]) and the
degradation against the teacher B, and computed statements of what helped.

Inputs are files other stages wrote (``local/recipes/st_kd.sh``):

* ``<system_dir>/system.json``: ``name``, ``role`` (teacher | c | kd | scheme | finetune),
  ``arch`` (conf/st_kd/arch file), ``depths`` (``S-T-D`` layers: speech encoder, text encoder,
  decoder), ``init`` (teacher | pretrained: how a student was initialised), ``scheme`` (the
  conf/st_kd/schemes file of a KD student, or the training scheme module | task | all), ``base``
  (the system an M* was fine-tuned from) and ``checkpoint``;
* ``<system_dir>/model.json`` (optional, written by the decoding): ``params`` and measured
  ``depths``;
* ``<system_dir>/decode_<set>_{sph,txt}/scores-<set>.json``: BLEU (sacrebleu) of the speech and
  of the text input;
* the JSON of ``python -m speechkd.bin.st_param_table --json`` (Table 1) and the ``best_kd.json``
  of the recipe (the KD student with the best dev BLEU[sph], the one M* fine-tunes).

Labels follow the paper: ``B``; ``C: 6-6-6 (fine-tuned)`` for a student initialised from the
fine-tuned teacher, ``(pre-trained)`` from wav2vec 2.0 + mBART; ``M: L_kd_res(enc)`` … from the
KD terms of the scheme file; ``M: task`` for a training scheme; ``M*: …`` for a fine-tuned one.
Degradation is ``100 (B - X) / B``. The paper's numbers (MuST-C tst-COMMON, 12-12-12 → 6-6-6)
stand beside each system with a counterpart; the teacher's BLEU[sph] is Table 4's 28.38 (Table 3
prints 29.75, but its degradations are computed from 28.38).

Output: a Markdown section (``##`` heading) for ``speechkd.bin.write_results --section`` and
RESULTS.json beside it with every number of its tables (:func:`result_rows`), written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from speechkd.errors import ConfigError, DataError
from speechkd.eval.markdown import md_table
from speechkd.eval.report_inputs import (  # noqa: F401  (parse_system_spec: the CLI's)
    load_json_object,
    parse_system_spec,
    parse_system_specs,
)
from speechkd.eval.results_json import (
    ALL,
    ResultRows,
    results_json_path,
    stable_name,
    unique_names,
    write_results_json,
)
from speechkd.utils.atomic import atomic_write_text

DASH = "–"
ROLES = ("teacher", "c", "kd", "scheme", "finetune")
INPUTS = ("sph", "txt")
INITS = {"teacher": "fine-tuned", "pretrained": "pre-trained"}
SCHEME_DIR = Path(__file__).resolve().parents[2] / "conf" / "st_kd" / "schemes"
KD_TERMS = ("res_enc", "res_dec", "feat", "rel")
#: Tolerance below which two BLEU scores count as equal in the statements.
TIE = 0.005
# below this BLEU a system does not translate: differences between such scores are noise
NOISE_BLEU = 1.0

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


# ---------------------------------------------------------------------------------------------
# Systems and scores
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------


def degradation(value: float | None, teacher: float | None) -> float | None:
    """``100 (teacher - value) / teacher``; None without both or with a zero teacher."""
    if value is None or teacher is None or teacher <= 0:
        return None
    return 100.0 * (teacher - value) / teacher


def _num(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


HEADER = (
    "Model",
    "SphEnc-TxtEnc-Dec",
    "Params (M)",
    "BLEU [sph]",
    "Degradation (%) [sph]",
    "BLEU [txt]",
    "Degradation (%) [txt]",
    "Paper BLEU [sph]",
    "Paper BLEU [txt]",
)


class Tables:
    """The rows of the report's tables for one test set."""

    def __init__(self, systems: Sequence[StSystem], set_name: str) -> None:
        self.systems = list(systems)
        self.set_name = set_name
        self.by_name = {s.name: s for s in self.systems}
        self.teacher = next((s for s in self.systems if s.role == "teacher"), None)
        self.missing: list[str] = []

    def teacher_bleu(self, modality: str) -> float | None:
        return None if self.teacher is None else self.teacher.bleu(self.set_name, modality)

    def label(self, system: StSystem) -> str:
        return system_label(system, self.by_name)

    def row(self, system: StSystem, best: Mapping[str, float | None] | None = None) -> list[str]:
        """One table row; a BLEU equal to ``best[input]`` is bold (the best of the block)."""
        cells = [self.label(system), system.depths, _num(_m(system.params))]
        for modality in INPUTS:
            value = system.bleu(self.set_name, modality)
            if value is None:
                self.missing.append(f"{system.name} [{modality}]")
            text = _num(value)
            if best and value is not None and best.get(modality) is not None:
                if abs(value - float(best[modality])) < TIE:
                    text = f"**{text}**"
            deg = (
                None
                if system.role == "teacher"
                else degradation(value, self.teacher_bleu(modality))
            )
            cells += [text, DASH if system.role == "teacher" else _num(deg)]
        paper = paper_bleu(system, self.by_name)
        cells += [_num(paper[0]), _num(paper[1])] if paper else [DASH, DASH]
        return cells

    def best_of(self, systems: Sequence[StSystem]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for modality in INPUTS:
            values = [s.bleu(self.set_name, modality) for s in systems]
            values = [v for v in values if v is not None]
            out[modality] = max(values) if values else None
        return out

    def block(self, title: str, systems: Sequence[StSystem], bold: bool = True) -> list[list[str]]:
        if not systems:
            return []
        best = self.best_of(systems) if bold and len(systems) > 1 else None
        return [[f"*{title}*"] + [""] * (len(HEADER) - 1)] + [self.row(s, best) for s in systems]

    # the groups of systems
    def role(self, role: str) -> list[StSystem]:
        return [s for s in self.systems if s.role == role]

    def kd_depths(self) -> str | None:
        students = self.role("kd") + self.role("scheme") + self.role("finetune")
        return students[0].depths if students else None

    def baseline_c(self) -> list[StSystem]:
        """The C systems of the KD students' structure (all C when there is no KD student)."""
        depths = self.kd_depths()
        cs = self.role("c")
        same = [c for c in cs if c.depths == depths]
        return same or cs

    def mstar_of(self, names: Iterable[str]) -> list[StSystem]:
        wanted = set(names)
        return [s for s in self.role("finetune") if s.base in wanted]


def _m(params: int | None) -> float | None:
    return None if params is None else params / 1e6


def table3(t: Tables) -> list[str]:
    teacher = [t.teacher] if t.teacher else []
    rows = t.block("Baseline", teacher, bold=False) + t.block("Compressed, no KD", t.role("c"))
    return md_table(HEADER, rows)


def table4(t: Tables) -> list[str]:
    kd = t.role("kd")
    single = [s for s in kd if is_single_term(s)]
    combos = [s for s in kd if not is_single_term(s)]
    teacher = [t.teacher] if t.teacher else []
    rows = t.block("Baselines", teacher + t.baseline_c(), bold=False)
    rows += t.block("Ablation study on individual KD loss terms", single)
    rows += t.block("Performance of student KD models", combos)
    rows += t.block("Fine-tuned without KD (M*)", t.mstar_of(s.name for s in kd), bold=False)
    return md_table(HEADER, rows)


def table5(t: Tables, base: StSystem | None) -> list[str]:
    baselines = ([base] + t.mstar_of([base.name])) if base else []
    schemes = t.role("scheme")
    rows = t.block("Baselines", baselines, bold=False)
    rows += t.block("Training schemes", schemes)
    rows += t.block("Fine-tuned without KD (M*)", t.mstar_of(s.name for s in schemes))
    return md_table(HEADER, rows)


# ---------------------------------------------------------------------------------------------
# Statements
# ---------------------------------------------------------------------------------------------


def _compare(a: float, b: float) -> int:
    """1 when a > b, -1 when a < b, 0 when they tie (within TIE)."""
    if abs(a - b) < TIE:
        return 0
    return 1 if a > b else -1


class _Facts:
    """Comparisons of the systems scored on one set (speech BLEU unless said otherwise)."""

    def __init__(self, t: Tables) -> None:
        self.t = t

    def bleu(self, system: StSystem, modality: str = "sph") -> float:
        value = system.bleu(self.t.set_name, modality)
        if value is None:
            raise DataError(f"{system.directory}: no BLEU[{modality}] on {self.t.set_name}")
        return value

    def scored(self, systems: Iterable[StSystem], modality: str = "sph") -> list[StSystem]:
        return [s for s in systems if s.bleu(self.t.set_name, modality) is not None]

    def best(self, systems: Iterable[StSystem]) -> StSystem | None:
        scored = self.scored(systems)
        return max(scored, key=self.bleu) if scored else None

    def ranked(self, systems: Iterable[StSystem]) -> list[StSystem]:
        return sorted(self.scored(systems), key=lambda s: -self.bleu(s))

    def order(self, systems: Iterable[StSystem], name: Any) -> str:
        """ "a (x) > b (y) = c (y)": best first, ``=`` between ties; ``name(system)`` labels."""
        ranked = self.ranked(systems)
        text = ""
        for i, s in enumerate(ranked):
            if i:
                text += " = " if _compare(self.bleu(ranked[i - 1]), self.bleu(s)) == 0 else " > "
            text += f"{name(s)} ({self.bleu(s):.2f})"
        return text

    def leaders(self, systems: Iterable[StSystem]) -> list[StSystem]:
        """The systems tying for the best BLEU[sph]."""
        best = self.best(systems)
        if best is None:
            return []
        return [s for s in self.scored(systems) if _compare(self.bleu(s), self.bleu(best)) == 0]

    def best_text(self, systems: Sequence[StSystem]) -> str:
        """ "X (x BLEU[sph])", or the systems that tie for the best."""
        top = self.leaders(systems)
        if len(top) == 1:
            return f"{self.t.label(top[0])} ({self.bleu(top[0]):.2f} BLEU[sph])"
        names = ", ".join(self.t.label(s) for s in top)
        return f"none alone: {names} tie at {self.bleu(top[0]):.2f} BLEU[sph]"

    def above(self, a: StSystem, b: StSystem) -> bool:
        return _compare(self.bleu(a), self.bleu(b)) > 0

    def vs(self, a: StSystem, b: StSystem, modality: str = "sph") -> str:
        """ "X (a) is above/below/level with Y (b), Δ d" for one input."""
        va, vb = self.bleu(a, modality), self.bleu(b, modality)
        verb = {1: "above", -1: "below", 0: "level with"}[_compare(va, vb)]
        return (
            f"{self.t.label(a)} ({va:.2f}) is {verb} {self.t.label(b)} ({vb:.2f}), "
            f"Δ {va - vb:+.2f} BLEU[{modality}]"
        )


def statements(t: Tables, base: StSystem | None) -> list[str]:
    """What helped, computed from the scores of one set (speech BLEU unless said otherwise)."""
    f = _Facts(t)
    out: list[str] = []
    everyone = f.scored(list(t.systems))
    if everyone and all(f.bleu(s) < NOISE_BLEU for s in everyone):
        top = max(f.bleu(s) for s in everyone)
        return [
            f"No system translates the speech input: every BLEU[sph] is below {NOISE_BLEU:.1f} "
            f"(the highest {top:.2f}), so the differences between them are noise and say "
            "nothing about KD, the loss terms or the schemes. Train longer (larger update "
            "budgets) before comparing."
        ]
    cs = f.scored(t.role("c"))
    kd = f.scored(t.role("kd"))
    schemes = f.scored(t.role("scheme"))
    mstar = f.scored(t.role("finetune"))
    students = kd + schemes + mstar

    # structure and initialisation without KD (Table 3)
    best_c = f.best(cs)
    if best_c is not None and len(cs) > 1:
        out.append(f"Without KD, the best compressed model: {f.best_text(cs)}.")
        for c in cs:
            twin = [d for d in cs if d.depths == c.depths and d.init != c.init]
            if c.init == "pretrained" and twin:
                out.append(f"Initialisation: {f.vs(c, twin[0])}.")

    # KD against no KD
    baseline = f.best(t.baseline_c())
    best_m = f.best(students)
    if baseline is not None and best_m is not None:
        verdict = "helped" if f.above(best_m, baseline) else "did not help"
        n_above = sum(f.above(m, baseline) for m in students)
        out.append(
            f"KD {verdict}: the best KD student {f.vs(best_m, baseline)}; "
            f"{n_above} of {len(students)} KD students are above it."
        )

    # the KD loss terms (Table 4)
    single = [m for m in kd if len(m.kd_terms) == 1]
    if single:
        order = f.order(single, lambda m: terms_label(m.kd_terms, m.kd_feat_reduce))
        out.append(f"Single KD terms, most to least effective: {order}.")
        if baseline is not None:
            below = [
                terms_label(m.kd_terms, m.kd_feat_reduce)
                for m in single
                if not f.above(m, baseline)
            ]
            if below:
                out.append(
                    f"Not above {t.label(baseline)} ({f.bleu(baseline):.2f}): {', '.join(below)}."
                )
            else:
                out.append(f"Every single KD term is above {t.label(baseline)}.")
    by_scheme = {m.scheme: m for m in kd}
    if "kd_res" in by_scheme and "kd_res_feat" in by_scheme:
        response, both = by_scheme["kd_res"], by_scheme["kd_res_feat"]
        out.append(f"Adding feature KD to response KD: {f.vs(both, response)}.")
    best_kd = f.best(kd)
    if best_kd is not None and len(kd) > 1:
        out.append(f"Best KD loss: {f.best_text(kd)}.")

    # fine-tuning without KD (M*)
    for m in mstar:
        b = t.by_name[str(m.base)]
        if b in students:
            txt = ""
            if f.scored([m, b], "txt") == [m, b]:
                txt = f"; Δ {f.bleu(m, 'txt') - f.bleu(b, 'txt'):+.2f} BLEU[txt]"
            out.append(f"Fine-tuning without KD: {f.vs(m, b)}{txt}.")

    # training schemes (Table 5)
    best_scheme = f.best(schemes)
    if best_scheme is not None:
        order = f.order(schemes, lambda m: m.scheme)
        out.append(f"Training schemes: {order}.")
        if base is not None and base in kd:
            out.append(f"Incremental against non-incremental training: {f.vs(best_scheme, base)}.")
        best_scheme_mstar = f.best(m for m in mstar if t.by_name[str(m.base)].role == "scheme")
        base_mstar = f.best(m for m in mstar if base is not None and m.base == base.name)
        if best_scheme_mstar is not None and base_mstar is not None:
            out.append(f"After fine-tuning: {f.vs(best_scheme_mstar, base_mstar)}.")

    # the best compressed model against the teacher
    best_all = f.best(cs + students)
    if best_all is not None and t.teacher is not None:
        parts = []
        for modality in INPUTS:
            value, teacher = best_all.bleu(t.set_name, modality), t.teacher_bleu(modality)
            if value is not None and teacher:
                parts.append(f"{100.0 * value / teacher:.1f}% of B's BLEU[{modality}]")
        size = ""
        if best_all.params and t.teacher.params:
            size = f" with {100.0 * best_all.params / t.teacher.params:.1f}% of its parameters"
        if parts:
            out.append(
                f"The best compressed model, {t.label(best_all)}, keeps {' and '.join(parts)}"
                f"{size} (the paper: 89.2% and 97.4% with 59.1%)."
            )
    return out


# ---------------------------------------------------------------------------------------------
# Parameters (Table 1)
# ---------------------------------------------------------------------------------------------


def params_table(report: Mapping[str, Any], path: str | os.PathLike = "params") -> list[str]:
    """Table 1 from the JSON of ``speechkd.bin.st_param_table --json``."""
    models = report.get("models")
    if not isinstance(models, dict) or not models:
        raise DataError(f"{path}: no 'models' in the parameter table")
    header = [
        "Model",
        "SphEnc-TxtEnc-Dec",
        "total (M)",
        "embedded (M)",
        "non-embedded (M)",
        "% total",
        "% non-embedded",
        "paper total (M)",
        "paper non-embedded (M)",
    ]
    rows = []
    for name, entry in models.items():
        try:
            counts = entry["counts"]
            paper = entry.get("paper") or {}
            rows.append(
                [
                    name,
                    entry["depths"],
                    _num(counts["total"] / 1e6),
                    _num(counts["embedded"] / 1e6),
                    _num(counts["non_embedded"] / 1e6),
                    _num(entry["total_pct"]),
                    _num(entry["non_embedded_pct"]),
                    _num(paper.get("total")),
                    _num(paper.get("non_embedded")),
                ]
            )
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: model {name!r} lacks {err}") from None
    vocab = report.get("vocab_size")
    lines = [f"Vocabulary {vocab:,} per token table." if isinstance(vocab, int) else ""]
    return md_table(header, rows) + [""] + [line for line in lines if line]


def trained_params(systems: Sequence[StSystem]) -> list[str]:
    rows = []
    teacher = next((s.params for s in systems if s.role == "teacher" and s.params), None)
    by_name = {s.name: s for s in systems}
    for s in systems:
        if s.params is None:
            continue
        pct = DASH if not teacher else f"{100.0 * s.params / teacher:.1f}"
        rows.append([system_label(s, by_name), s.depths, f"{s.params:,}", pct])
    if not rows:
        return []
    return md_table(["Model", "SphEnc-TxtEnc-Dec", "Parameters", "% of B"], rows)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _kd_base(systems: Sequence[StSystem], best: Mapping[str, Any] | None) -> StSystem | None:
    """Table 5's non-incremental baseline: M: L_kd_res (the schemes' loss), else the best KD."""
    kd = [s for s in systems if s.role == "kd"]
    for s in kd:
        if s.scheme == "kd_res":
            return s
    if best is not None:
        for s in kd:
            if s.name == best.get("best"):
                return s
    return None


def render_report(
    systems: Sequence[StSystem],
    sets: Sequence[str],
    params: Mapping[str, Any] | None = None,
    best: Mapping[str, Any] | None = None,
    title: str = "Joint speech/text ST KD",
) -> str:
    """The Markdown section of the report."""
    if not sets:
        raise ConfigError("sets: give at least one test set")
    by_name = {s.name: s for s in systems}
    lines = [f"## {title}", ""]
    lines += [
        "BLEU of the speech input (BLEU[sph], speech translation) and of the text input "
        "(BLEU[txt], the model's machine translation); degradation (%) against the teacher B. "
        "Paper: MuST-C v2 tst-COMMON, 12-12-12 teacher, 6-6-6 / 8-8-2 students.",
        "",
    ]
    base = _kd_base(systems, best)
    signatures: set[str] = set()
    for set_name in sets:
        t = Tables(systems, set_name)
        lines += [f"### {set_name}", ""]
        lines += ["#### Model structure and initialisation without KD (Table 3)", ""]
        lines += table3(t) + [""]
        if t.role("kd"):
            lines += ["#### KD loss terms (Table 4)", ""]
            lines += table4(t) + [""]
        if t.role("scheme"):
            lines += ["#### Training schemes (Table 5)", ""]
            lines += table5(t, base) + [""]
        facts = statements(t, base)
        if facts:
            lines += ["#### What helped", ""] + [f"- {f}" for f in facts] + [""]
        if t.missing:
            lines += [f"Missing results: {', '.join(dict.fromkeys(t.missing))}.", ""]
        signatures |= {
            sc.signature for s in systems for (n, _), sc in s.scores.items() if n == set_name
        }
    if best is not None and best.get("best") in by_name:
        chosen = by_name[str(best["best"])]
        bleu = best.get("bleu") or {}
        listing = ", ".join(
            f"{system_label(by_name[n], by_name)} {float(v):.2f}"
            for n, v in bleu.items()
            if n in by_name
        )
        values = [float(v) for v in bleu.values()]
        tie = sum(abs(v - max(values)) < TIE for v in values) > 1 if values else False
        note = " (a tie: the first of the list)" if tie else ""
        lines += [
            f"M* of the best KD student fine-tunes {system_label(chosen, by_name)}, the highest "
            f"{best.get('set', 'dev')} BLEU[{best.get('input', 'sph')}]{note} ({listing}).",
            "",
        ]
    lines += ["### Parameters (Table 1)", ""]
    if params is not None:
        lines += params_table(params) + [""]
    trained = trained_params(systems)
    if trained:
        lines += ["Trained systems:", ""] + trained + [""]
    if signatures:
        lines += ["BLEU: sacrebleu, " + "; ".join(f"`{sig}`" for sig in sorted(signatures)), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


# ---------------------------------------------------------------------------------------------
# RESULTS.json
# ---------------------------------------------------------------------------------------------

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


def write_report(
    specs: Mapping[str, str | os.PathLike],
    sets: Sequence[str],
    out: str | os.PathLike,
    params: str | os.PathLike | None = None,
    best: str | os.PathLike | None = None,
    title: str = "Joint speech/text ST KD",
    scheme_dir: str | os.PathLike = SCHEME_DIR,
    results_meta: bool = False,
    language: str = "de",
) -> Path:
    """Load the inputs, render the report and write it atomically to ``out`` with RESULTS.json
    beside it (BLEU rows in the target ``language``), and, with ``results_meta``, each system's
    ``results_meta.json``."""
    systems = load_systems(specs, sets, scheme_dir)
    params_data = load_json_object(Path(params), "parameter table") if params else None
    best_data = load_json_object(Path(best), "best KD student") if best else None
    text = render_report(systems, sets, params_data, best_data, title)
    out = Path(out)
    rows = result_rows(systems, sets, params_data, best_data, language)
    write_results_json(rows, results_json_path(out))
    atomic_write_text(out, text)
    if results_meta:
        write_results_meta(systems)
    return out
