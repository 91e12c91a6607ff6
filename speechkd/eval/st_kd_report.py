"""The joint speech/text ST KD report: what the run shows, model structure and initialisation
without KD (the paper's Table 3), the KD loss terms (Table 4), the training schemes (Table 5) and
the parameter table (Table 1), each with BLEU of the speech input (BLEU[sph]), of the text input
(BLEU[txt]) and the degradation against the teacher B.

Inputs (:mod:`speechkd.eval.st_kd_data`): each system's ``system.json``, ``model.json`` and
scores, the JSON of ``python -m speechkd.bin.st_param_table --json`` (Table 1) and the recipe's
``best_kd.json`` (the KD student with the best dev BLEU[sph], the one M* fine-tunes). When B is
at chance on an input (:mod:`speechkd.eval.report_kit`), no degradation is shown for it and the
claims measured against B have no verdict. Output: the Markdown section and RESULTS.json beside
it (:func:`speechkd.eval.st_kd_data.result_rows`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from speechkd.errors import ConfigError, DataError
from speechkd.eval import report_kit as kit
from speechkd.eval.report_kit import DASH, Claim
from speechkd.eval.st_kd_data import (
    INPUTS,
    KD_TERMS,
    SCHEME_DIR,
    StSystem,
    degradation,
    is_single_term,
    load_systems,
    paper_bleu,
    result_rows,
    system_label,
    write_results_meta,
)

MBART_CC25_VOCAB = 250_027  # mbart.cc25's token table, the default of st_param_table
PAPER_KEPT = (89.2, 97.4, 59.1)  # % of B's BLEU[sph], BLEU[txt] and parameters kept by M*: task
SPH = "BLEU[sph]"
BEST_LOSS = "Response KD (L_kd_res) is the best KD loss (paper: 24.72)"
BEST_SCHEME = (
    "The task scheme beats the other training schemes (paper: task 25.11, module 24.47, all 24.40)"
)


def _num(x: float | None) -> str:
    return DASH if x is None else f"{x:.2f}"


class Tables:
    """The rows of the report's tables for one test set."""

    def __init__(self, systems: Sequence[StSystem], set_name: str) -> None:
        self.systems = list(systems)
        self.set_name = set_name
        self.by_name = {s.name: s for s in self.systems}
        self.teacher = next((s for s in self.systems if s.role == "teacher"), None)
        self.missing: list[str] = []
        # degradation only against a teacher that translates (the degeneracy rule)
        self.inputs = [m for m in INPUTS if not kit.at_chance(self.teacher_bleu(m), "bleu")]

    def teacher_bleu(self, modality: str) -> float | None:
        return None if self.teacher is None else self.teacher.bleu(self.set_name, modality)

    def bleu(self, system: StSystem, modality: str = "sph") -> float | None:
        return system.bleu(self.set_name, modality)

    def label(self, system: StSystem) -> str:
        return system_label(system, self.by_name)

    def header(self) -> list[str]:
        cells = ["Model", "SphEnc-TxtEnc-Dec", "Params (M)"]
        for m in INPUTS:
            cells += [f"BLEU [{m}]"] + ([f"Degradation (%) [{m}]"] if m in self.inputs else [])
        return cells + ["Paper BLEU [sph]", "Paper BLEU [txt]"]

    def row(self, system: StSystem, best: Mapping[str, float | None] | None = None) -> list[str]:
        """One table row; a BLEU equal to ``best[input]`` (within a tie) is bold."""
        params = None if system.params is None else system.params / 1e6
        cells = [self.label(system), system.depths, _num(params)]
        for m in INPUTS:
            value = self.bleu(system, m)
            if value is None:
                self.missing.append(f"{system.name} [{m}]")
            top = (best or {}).get(m)
            bold = value is not None and top is not None and kit.compare(value, top, "bleu") == 0
            cells.append(f"**{_num(value)}**" if bold else _num(value))
            if m in self.inputs:
                deg = degradation(value, self.teacher_bleu(m))
                cells.append(DASH if system.role == "teacher" else _num(deg))
        paper = paper_bleu(system, self.by_name)
        return cells + ([_num(paper[0]), _num(paper[1])] if paper else [DASH, DASH])

    def block(self, title: str, systems: Sequence[StSystem], bold: bool = True) -> list[list[str]]:
        if not systems:
            return []
        best = None
        if bold and len(systems) > 1:
            scores = {m: [v for s in systems if (v := self.bleu(s, m)) is not None] for m in INPUTS}
            best = {m: max(v) if v else None for m, v in scores.items()}
        blank = [""] * (len(self.header()) - 1)
        return [[f"*{title}*", *blank]] + [self.row(s, best) for s in systems]

    def role(self, role: str) -> list[StSystem]:
        return [s for s in self.systems if s.role == role]

    def baseline_c(self) -> list[StSystem]:
        """The C systems of the KD students' structure (all C when there is no KD student)."""
        students = self.role("kd") + self.role("scheme") + self.role("finetune")
        same = [c for c in self.role("c") if students and c.depths == students[0].depths]
        return same or self.role("c")

    def mstar_of(self, names: Iterable[str]) -> list[StSystem]:
        wanted = set(names)
        return [s for s in self.role("finetune") if s.base in wanted]

    def table(self, blocks: Sequence[tuple[str, Sequence[StSystem], bool]]) -> list[str]:
        rows = [r for title, systems, bold in blocks for r in self.block(title, systems, bold)]
        return kit.md_table(self.header(), rows)

    def degradation_note(self) -> list[str]:
        hidden = [m for m in INPUTS if m not in self.inputs and self.teacher is not None]
        if not hidden:
            return []
        reasons = "; ".join(
            str(kit.degenerate_reason(f"BLEU[{m}]", {}, ("B", self.teacher_bleu(m))))
            for m in hidden
        )
        shown = ", ".join(f"[{m}]" for m in hidden)
        return [f"Degradation {shown} against B: **{kit.NO_VERDICT}** ({reasons}).", ""]


def table3(t: Tables) -> list[str]:
    teacher = [t.teacher] if t.teacher else []
    return t.table([("Baseline", teacher, False), ("Compressed, no KD", t.role("c"), True)])


def table4(t: Tables) -> list[str]:
    kd = t.role("kd")
    teacher = [t.teacher] if t.teacher else []
    return t.table(
        [
            ("Baselines", teacher + t.baseline_c(), False),
            (
                "Ablation study on individual KD loss terms",
                [s for s in kd if is_single_term(s)],
                True,
            ),
            ("Performance of student KD models", [s for s in kd if not is_single_term(s)], True),
            ("Fine-tuned without KD (M*)", t.mstar_of(s.name for s in kd), False),
        ]
    )


def table5(t: Tables, base: StSystem | None) -> list[str]:
    schemes = t.role("scheme")
    return t.table(
        [
            ("Baselines", ([base] + t.mstar_of([base.name])) if base else [], False),
            ("Training schemes", schemes, True),
            ("Fine-tuned without KD (M*)", t.mstar_of(s.name for s in schemes), True),
        ]
    )


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------


def _scored(t: Tables, systems: Iterable[StSystem]) -> list[StSystem]:
    return [s for s in systems if t.bleu(s) is not None]


def _best(t: Tables, systems: Iterable[StSystem]) -> StSystem | None:
    return max(_scored(t, systems), key=lambda s: t.bleu(s) or 0.0, default=None)


def _order(t: Tables, systems: Iterable[StSystem]) -> str:
    """ "a (x) > b (y) = c (y)": best first, ``=`` between ties."""
    ranked = sorted(_scored(t, systems), key=lambda s: -(t.bleu(s) or 0.0))
    text = ""
    for i, s in enumerate(ranked):
        if i:
            tie = kit.compare(t.bleu(ranked[i - 1]) or 0.0, t.bleu(s) or 0.0, "bleu") == 0
            text += " = " if tie else " > "
        text += f"{t.label(s)} ({t.bleu(s):.2f})"
    return text


def _pair(t: Tables, text: str, a: StSystem, b: StSystem) -> Claim:
    teacher = ("B", t.teacher_bleu("sph")) if t.teacher else None
    return kit.pair_claim(text, (t.label(a), t.bleu(a)), (t.label(b), t.bleu(b)), SPH, teacher)


def _wins(t: Tables, text: str, winner: StSystem, rivals: Sequence[StSystem]) -> Claim:
    """``winner`` beats each of ``rivals`` (BLEU[sph]), with the ranking as evidence."""
    values = {t.label(s): t.bleu(s) for s in (winner, *rivals)}
    reason = kit.degenerate_reason(SPH, values, ("B", t.teacher_bleu("sph")) if t.teacher else None)
    if reason is not None:
        return kit.no_verdict(text, reason)
    outcomes = [kit.compare(t.bleu(winner) or 0.0, t.bleu(r) or 0.0, "bleu") for r in rivals]
    return Claim(text, kit.verdict_of(outcomes), _order(t, (winner, *rivals)))


def _kept(t: Tables, best: StSystem) -> Claim:
    """The best compressed model keeps the paper's share of B's BLEU[sph]."""
    text = f"The best compressed model keeps at least the paper's {PAPER_KEPT[0]} % of B's {SPH}"
    teacher = t.teacher_bleu("sph")
    reason = kit.degenerate_reason(SPH, {}, ("B", teacher))
    if reason is not None or t.teacher is None:
        return kit.no_verdict(text, reason or "no teacher")
    kept = {m: 100.0 * (t.bleu(best, m) or 0.0) / (t.teacher_bleu(m) or 1.0) for m in INPUTS}
    size = (
        f" with {100.0 * best.params / t.teacher.params:.1f} % of its parameters"
        if best.params and t.teacher.params
        else ""
    )
    evidence = (
        f"{t.label(best)}: {kept['sph']:.1f} % of BLEU[sph], {kept['txt']:.1f} % of BLEU[txt]{size}"
    )
    verdict = kit.YES if kit.compare(kept["sph"], PAPER_KEPT[0], "bleu") >= 0 else kit.NO
    return Claim(text, verdict, evidence)


def claims(t: Tables, base: StSystem | None) -> list[Claim]:
    """KD against no KD, the best KD loss, the schemes, what M* added and the share of B kept."""
    kd, schemes = _scored(t, t.role("kd")), _scored(t, t.role("scheme"))
    mstar = _scored(t, t.role("finetune"))
    students, out = kd + schemes + mstar, []
    baseline, best_m = _best(t, t.baseline_c()), _best(t, students)
    if baseline is not None and best_m is not None:
        claim = _pair(t, "KD beats the compressed model trained without KD", best_m, baseline)
        above = sum(kit.beats(t.bleu(m) or 0.0, t.bleu(baseline) or 0.0, "bleu") for m in students)
        if claim.verdict != kit.NO_VERDICT:
            extra = f"; {above} of {len(students)} KD students above it"
            claim = dataclasses.replace(claim, evidence=claim.evidence + extra)
        out.append(claim)
    res = next((m for m in kd if m.scheme == "kd_res"), None)
    if res is not None and len(kd) > 1:
        out.append(_wins(t, BEST_LOSS, res, [m for m in kd if m is not res]))
    task = next((m for m in schemes if m.scheme == "task"), None)
    if task is not None and len(schemes) > 1:
        out.append(_wins(t, BEST_SCHEME, task, [m for m in schemes if m is not task]))
    if schemes and base is not None and base in kd:
        text = f"Incremental training beats non-incremental {t.label(base)} (paper: 25.11 vs 24.72)"
        out.append(_pair(t, text, _best(t, schemes) or schemes[0], base))
    for m in mstar:
        b = t.by_name[str(m.base)]
        if b in students:
            out.append(_pair(t, f"Fine-tuning without KD (M*) improves {t.label(b)}", m, b))
    best_all = _best(t, _scored(t, t.role("c")) + students)
    if best_all is not None:
        out.append(_kept(t, best_all))
    return out


# ---------------------------------------------------------------------------------------------
# Parameters (Table 1)
# ---------------------------------------------------------------------------------------------


def _vocab_caption(report: Mapping[str, Any]) -> str:
    """Why a total differs from the paper's: the vocabulary the embedding tables count."""
    vocab = report.get("vocab_size")
    for name, entry in report["models"].items():
        paper, counts = entry.get("paper") or {}, entry["counts"]
        if not (isinstance(vocab, int) and paper.get("total") and paper.get("non_embedded")):
            continue
        which = " (mbart.cc25's full vocabulary)" if vocab == MBART_CC25_VOCAB else ""
        implied = (report.get("notes") or {}).get("implied_vocabulary")
        guess = f", a vocabulary of about {implied:,.0f} entries" if implied else ""
        return (
            f"Totals differ from the paper's through the vocabulary: every token table here has "
            f"{vocab:,} entries{which}, so {name} counts {counts['total'] / 1e6:.2f}M parameters "
            f"beside the paper's {paper['total']:.2f}M, {counts['embedded'] / 1e6:.2f}M of them "
            f"embedded against the paper's {paper['total'] - paper['non_embedded']:.2f}M{guess}. "
            f"The non-embedded counts ({counts['non_embedded'] / 1e6:.2f}M against "
            f"{paper['non_embedded']:.2f}M) compare the architectures."
        )
    return f"Vocabulary {vocab:,} per token table." if isinstance(vocab, int) else ""


def params_table(report: Mapping[str, Any], path: str | os.PathLike = "params") -> list[str]:
    """Table 1 from the JSON of ``speechkd.bin.st_param_table --json``."""
    models = report.get("models")
    if not isinstance(models, dict) or not models:
        raise DataError(f"{path}: no 'models' in the parameter table")
    header = ["Model", "SphEnc-TxtEnc-Dec", "total (M)", "embedded (M)", "non-embedded (M)"]
    header += ["% total", "% non-embedded", "paper total (M)", "paper non-embedded (M)"]
    rows = []
    for name, entry in models.items():
        try:
            c, paper = entry["counts"], entry.get("paper") or {}
            counts = [c[k] / 1e6 for k in ("total", "embedded", "non_embedded")]
            numbers = [*counts, entry["total_pct"], entry["non_embedded_pct"]]
            numbers += [paper.get("total"), paper.get("non_embedded")]
            rows.append([name, entry["depths"], *map(_num, numbers)])
        except (KeyError, TypeError) as err:
            raise DataError(f"{path}: model {name!r} lacks {err}") from None
    caption = _vocab_caption(report)
    return [*kit.md_table(header, rows), "", *([caption] if caption else [])]


def trained_params(systems: Sequence[StSystem]) -> list[str]:
    teacher = next((s.params for s in systems if s.role == "teacher" and s.params), None)
    by_name = {s.name: s for s in systems}
    rows = [
        [
            system_label(s, by_name),
            s.depths,
            f"{s.params:,}",
            f"{100.0 * s.params / teacher:.1f}" if teacher else DASH,
        ]
        for s in systems
        if s.params is not None
    ]
    return (
        kit.md_table(["Model", "SphEnc-TxtEnc-Dec", "Parameters", "% of B"], rows) if rows else []
    )


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def _kd_base(systems: Sequence[StSystem], best: Mapping[str, Any] | None) -> StSystem | None:
    """Table 5's non-incremental baseline: M: L_kd_res (the schemes' loss), else the best KD."""
    kd = [s for s in systems if s.role == "kd"]
    wanted = [s for s in kd if s.scheme == "kd_res"]
    wanted += [s for s in kd if best is not None and s.name == best.get("best")]
    return wanted[0] if wanted else None


def _best_note(systems: Sequence[StSystem], best: Mapping[str, Any]) -> list[str]:
    by_name = {s.name: s for s in systems}
    bleu = {n: float(v) for n, v in (best.get("bleu") or {}).items() if n in by_name}
    listing = ", ".join(f"{system_label(by_name[n], by_name)} {v:.2f}" for n, v in bleu.items())
    tie = sum(kit.compare(v, max(bleu.values()), "bleu") == 0 for v in bleu.values()) > 1
    note = " (a tie: the first of the list)" if tie else ""
    return [
        f"M* of the best KD student fine-tunes {system_label(by_name[best['best']], by_name)}, the "
        f"highest {best.get('set', 'dev')} BLEU[{best.get('input', 'sph')}]{note} ({listing}).",
        "",
    ]


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
    base = _kd_base(systems, best)
    found = []
    for set_name in sets:
        t = Tables(systems, set_name)
        prefix = f"{set_name}: " if len(sets) > 1 else ""
        found += [dataclasses.replace(c, text=prefix + c.text) for c in claims(t, base)]
    lines = [f"## {title}", "", *kit.render_claims(found)]
    lines += [
        "BLEU of the speech input (BLEU[sph], speech translation) and of the text input "
        "(BLEU[txt], the model's machine translation); degradation (%) against the teacher B. "
        "Paper: MuST-C v2 tst-COMMON, 12-12-12 teacher, 6-6-6 / 8-8-2 students.",
        "",
    ]
    signatures: set[str] = set()
    for set_name in sets:
        t = Tables(systems, set_name)
        lines += [
            f"### {set_name}",
            "",
            "#### Model structure and initialisation without KD (Table 3)",
            "",
        ]
        lines += [*table3(t), "", *t.degradation_note()]
        if t.role("kd"):
            lines += ["#### KD loss terms (Table 4)", "", *table4(t), ""]
        if t.role("scheme"):
            lines += ["#### Training schemes (Table 5)", "", *table5(t, base), ""]
        if t.missing:
            lines += [f"Missing results: {', '.join(dict.fromkeys(t.missing))}.", ""]
        signatures |= {
            sc.signature for s in systems for (n, _), sc in s.scores.items() if n == set_name
        }
    if best is not None and best.get("best") in {s.name for s in systems}:
        lines += _best_note(systems, best)
    lines += ["### Parameters (Table 1)", ""]
    lines += [*params_table(params), ""] if params is not None else []
    trained = trained_params(systems)
    lines += ["Trained systems:", "", *trained, ""] if trained else []
    if signatures:
        lines += ["BLEU: sacrebleu, " + "; ".join(f"`{sig}`" for sig in sorted(signatures)), ""]
    return kit.join_section(lines)


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
    params_data = kit.load_json_object(Path(params), "parameter table") if params else None
    best_data = kit.load_json_object(Path(best), "best KD student") if best else None
    text = render_report(systems, sets, params_data, best_data, title)
    out = kit.write_section(out, text, result_rows(systems, sets, params_data, best_data, language))
    if results_meta:
        write_results_meta(systems)
    return out


__all__ = ["KD_TERMS", "SCHEME_DIR", "Tables", "claims", "params_table", "write_report"]
