"""The PEPSI report: what the run shows, the paper's Tables 3, 4 and 1 and Figs. 3b and 4.

Inputs (:mod:`speechkd.eval.pepsi_data`): error rates and parameter counts of every system per
language (Table 3) and of the transfer experiment (Table 4), tickets pruned on each language and
decoded zero-shot (Table 1), ``imp-history.json`` of ``pepsi_prune`` (alive share per layer group
and round, Fig. 3b) and figure tables. "Pruned" means fewer parameters at inference than the
total; a system's total is that of its language's foundation model.

Sparsity convention (:data:`SPARSITY_NOTE`): a pruned share is of ALL the foundation model's
parameters, as the paper's 0.77B of 1.54B alive for whisper-large at 50%.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from speechkd.eval import report_kit as kit
from speechkd.eval.markdown import md_table
from speechkd.eval.pepsi_data import (
    METRICS,
    Group,
    Params,
    SubnetPoint,
    group_metric,
    load_error_rates,
    primary_metric,
    result_name,
)
from speechkd.eval.report_kit import DASH, Claim, fmt_rate
from speechkd.eval.report_kit import fmt_count as format_count

SPARSITY_NOTE = (
    "Sparsity convention: a pruned share (sparsity, prune %) is of ALL the foundation model's "
    "parameters, as the paper's 0.77B of 1.54B alive for whisper-large at 50%. Biases, norms, "
    "the fixed positions and the LoRA-carrying q/v are never pruned and count as alive, so the "
    "prunable weights lose more than that share."
)


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------


def _trainable(p: Params) -> str:
    return DASH if p.trainable == 0 else format_count(p.trainable)


def _alive(p: Params) -> str:
    if p.inference is None or not p.total:
        return DASH
    return f"{100.0 * p.inference / p.total:.1f}%"


def _span(values: Sequence[str]) -> str:
    """One value, or the first and last of several distinct ones."""
    distinct = list(dict.fromkeys(values))
    return distinct[0] if len(distinct) == 1 else f"{distinct[0]} … {distinct[-1]}"


def _metrics(rates: Mapping[str, Mapping[str, Mapping[str, float]]], set_name: str) -> list[str]:
    present = {m for per_set in rates.values() for m in per_set[set_name]}
    return [m for m in METRICS if m in present]


def render_main_table(groups: Sequence[Group]) -> list[str]:
    """Table 3: one row per system; parameters, then the error rates per language and set."""
    names = list(dict.fromkeys(s.name for g in groups for s in g.systems))
    rates = {g.name: g.rates() for g in groups}
    columns: list[tuple[str, str, str]] = []  # (group, set, metric)
    for g in groups:
        for set_name in g.sets:
            columns += [(g.name, set_name, m) for m in _metrics(rates[g.name], set_name)]
    multi_set = any(len(g.sets) > 1 for g in groups)
    header = ["System", "Pruned", "Trainable", "Inference"]
    header += [
        f"{set_name if multi_set else group} {metric.upper()}"
        for group, set_name, metric in columns
    ]
    rows = []
    for name in names:
        params = [s.params for g in groups for s in g.systems if s.name == name]
        row = [
            name,
            "Y" if any(p.pruned for p in params) else "N",
            _span([_trainable(p) for p in params]),
            _span([format_count(p.inference) for p in params]),
        ]
        for group, set_name, metric in columns:
            value = rates[group].get(name, {}).get(set_name, {}).get(metric)
            row.append(fmt_rate(value))
        rows.append(row)
    sets = sorted({s for g in groups for s in g.sets})
    caption = (
        "Error rates (%, lower is better) of every system trained per target language on its "
        f"test set ({', '.join(sets)}); Trainable: parameters updated ({DASH}: none), "
        "Inference: parameters alive at inference (adapters merged; first … last language "
        "where the tickets differ). CER and WER are of the same hypotheses."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_params_table(groups: Sequence[Group]) -> list[str]:
    """Trainable and alive parameters per system and language."""
    names = list(dict.fromkeys(s.name for g in groups for s in g.systems))
    header = ["System"]
    for g in groups:
        header += [f"{g.name} trainable", f"{g.name} inference (alive)"]
    rows = []
    for name in names:
        row = [name]
        for g in groups:
            p = next((s.params for s in g.systems if s.name == name), None)
            if p is None:
                row += [DASH, DASH]
            else:
                row += [_trainable(p), f"{format_count(p.inference)} ({_alive(p)})"]
        rows.append(row)
    totals = {g.name: g.systems[0].params.total for g in groups}
    shown = ", ".join(f"{k} {format_count(v)}" for k, v in totals.items())
    caption = (
        "Parameters per language: trained, and alive at inference with their share of the "
        f"foundation model's total ({shown})."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_transfer_table(group: Group, language: str) -> list[str]:
    """Table 4: the transfer corpus' test sets; pruned models carry the tickets pruned on the
    main corpus' ``language``."""
    rates = group.rates()
    columns = [(s, m) for s in group.sets for m in _metrics(rates, s)]
    header = ["System", "Trainable", "Inference", "Pruned", "Trained on"]
    header += [f"{s} {m.upper()}" for s, m in columns]
    rows = []
    for system in group.systems:
        p = system.params
        row = [
            system.name,
            _trainable(p),
            format_count(p.inference),
            "Y" if p.pruned else "N",
            group.name if p.trainable else DASH,
        ]
        row += [fmt_rate(rates[system.name][s].get(m)) for s, m in columns]
        rows.append(row)
    caption = (
        f"Transfer to {group.name}: pruned models use the tickets pruned on {language} of the "
        f"main corpus, then (LTH-FT, PEPSI) are trained on {group.name} like FFT and LoRA; "
        "error rates (%) on its test sets."
    )
    return [caption, "", *md_table(header, rows), ""]


def render_subnet_tables(points: Sequence[SubnetPoint], sets: Sequence[str]) -> list[str]:
    """Table 1: per evaluated language, one row per language pruned on, one column per level."""
    lines: list[str] = []
    for language in dict.fromkeys(p.language for p in points):
        own = [p for p in points if p.language == language]
        levels = sorted({p.pct for p in own})
        sources = list(dict.fromkeys(p.pruned_on for p in own))
        for set_base in sets:
            set_name = f"{set_base}_{language}"
            metric = None
            rows = []
            for source in sources:
                row = [source]
                for level in levels:
                    point = next((p for p in own if p.pruned_on == source and p.pct == level), None)
                    if point is None:
                        row.append(DASH)
                        continue
                    rates = load_error_rates(point.decode_dir, set_name, both=False)
                    metric = metric or next(m for m in METRICS if m in rates)
                    row.append(fmt_rate(rates.get(metric)))
                rows.append(row)
            header = ["Pruned on", *(f"alive {100.0 - level:.1f}%" for level in levels)]
            lines += [
                f"Zero-shot {(metric or 'error rate').upper()} (%) on {set_name} of the tickets "
                f"pruned on each language (rewound to the foundation weights, nothing trained); "
                "alive: share of all parameters kept (100%: the unpruned model).",
                "",
                *md_table(header, rows),
                "",
            ]
    return lines


def render_alive_table(history: Mapping) -> list[str]:
    """The numbers of Fig. 3b: alive % per layer group after every IMP round."""
    from speechkd.eval.pruning_plots import LAYER_GROUP_TITLES, alive_table

    groups, rounds, alive = alive_table(history)
    by_round = {int(r["round"]): r for r in history["rounds"]}
    header = ["Round", "Pruned", *(LAYER_GROUP_TITLES.get(g, g) for g in groups)]
    rows = []
    for j, round_index in enumerate(rounds):
        sparsity = by_round[round_index].get("sparsity")
        pruned = DASH if sparsity is None else f"{100.0 * float(sparsity):.1f}%"
        rows.append([round_index, pruned, *(f"{alive[i, j]:.1f}" for i in range(len(groups)))])
    # Histories from before the all-parameter convention record shares of the prunable weights.
    of = "all parameters" if history.get("sparsity_of") == "all parameters" else "prunable weights"
    return [
        f"Alive parameters (%) per layer group after each IMP round (Pruned: share of {of} "
        "removed).",
        "",
        *md_table(header, rows),
        "",
    ]


# ---------------------------------------------------------------------------------------------
# Claims
# ---------------------------------------------------------------------------------------------

PAPER_ALIVE = "0.77B of 1.54B"  # whisper-large, 50 % pruned
ALIVE_TOLERANCE = 5.0  # points of alive share around the half the ticket keeps
RIVALS = (("fft", "FFT"), ("lth_ft", "LTH-FT"), ("lora", "LoRA"))


def _ticket_claim(groups: Sequence[Group]) -> list[Claim]:
    """The PEPSI ticket keeps half of the parameters at inference (alive / total)."""
    shown = {}
    for g in groups:
        for p in (s.params for s in g.systems if result_name(s.name) == "pepsi"):
            if p.inference is not None and p.total:
                shown[g.name] = (p.inference, p.total, 100.0 * p.inference / p.total)
    if not shown:
        return []
    text = f"The PEPSI ticket keeps half of the parameters at inference (paper: {PAPER_ALIVE})"
    ok = all(abs(pct - 50.0) <= ALIVE_TOLERANCE for _, _, pct in shown.values())
    evidence = ", ".join(
        f"{lang} {format_count(a)} of {format_count(t)} alive ({pct:.1f} %)"
        for lang, (a, t, pct) in shown.items()
    )
    return [
        Claim(text, kit.YES if ok else kit.NO, f"{evidence}; within {ALIVE_TOLERANCE:g} points")
    ]


def _versus_claim(group: Group, set_name: str, where: str) -> list[Claim]:
    """PEPSI is no worse than FFT and beats LTH-FT and LoRA on ``set_name`` of ``group``."""
    by = {result_name(s.name): s.name for s in group.systems}
    rivals = [(by[k], label) for k, label in RIVALS if k in by]
    if "pepsi" not in by or not rivals:
        return []
    metric, rates = group_metric(group, set_name), group.rates()
    value = {n: rates[n][set_name].get(metric) for n in (by["pepsi"], *(n for n, _ in rivals))}
    parts = ["is no worse than FFT"] if "fft" in by else []
    beaten = [label for _, label in rivals if label != "FFT"]
    parts += [f"beats {' and '.join(beaten)}"] if beaten else []
    text = f"PEPSI {' and '.join(parts)} ({where} {metric.upper()})"
    reason = kit.degenerate_reason(metric.upper(), value)
    if reason is not None:
        return [kit.no_verdict(text, reason)]
    pepsi = value[by["pepsi"]]
    outcomes = [kit.compare(pepsi, value[n], metric) for n, _ in rivals]
    outcomes = [
        1 if o == 0 and label == "FFT" else o
        for o, (_, label) in zip(outcomes, rivals, strict=True)
    ]
    evidence = ", ".join(f"{n} {v:.2f}" for n, v in value.items())
    return [Claim(text, kit.verdict_of(outcomes), evidence)]


def _primary_rate(point: SubnetPoint, set_name: str) -> tuple[str, float]:
    """The metric of ``set_name`` in the point's decode and its rate."""
    metric = primary_metric(point.decode_dir, set_name)
    return metric, load_error_rates(point.decode_dir, set_name, both=False)[metric]


def _subnet_claim(own: Mapping, language: str, other: str, set_name: str) -> Claim:
    """The ticket pruned on ``language`` beats the one pruned on ``other`` at every level."""
    levels = sorted(pct for on, pct in own if on == other and (language, pct) in own)
    rates = {
        (on, pct): _primary_rate(own[(on, pct)], set_name)
        for pct in levels
        for on in (language, other)
    }
    metric = next(iter(rates.values()))[0].upper()
    text = f"A ticket pruned on {language} decodes {set_name} better than one pruned on {other}"
    text += f" (Table 1, {metric})"
    reason = kit.degenerate_reason(
        metric, {f"{on} {pct:g} %": r for (on, pct), (_, r) in rates.items()}
    )
    if reason is not None:
        return kit.no_verdict(text, reason)
    pairs = [(pct, rates[(language, pct)][1], rates[(other, pct)][1]) for pct in levels]
    outcomes = [kit.compare(a, b, metric) for _, a, b in pairs]
    evidence = "; ".join(f"alive {100 - pct:.1f} %: {a:.2f} vs {b:.2f}" for pct, a, b in pairs)
    return Claim(text, kit.verdict_of(outcomes), evidence)


def _subnet_claims(points: Sequence[SubnetPoint], sets: Sequence[str]) -> list[Claim]:
    """Table 1: per evaluated language and other language pruned on, tickets past 0 %."""
    out = []
    for language in dict.fromkeys(p.language for p in points):
        own = {(p.pruned_on, p.pct): p for p in points if p.language == language and p.pct > 0}
        for other in dict.fromkeys(on for on, _ in own if on != language):
            if any(on == language and (other, pct) in own for on, pct in own):
                out += [_subnet_claim(own, language, other, f"{b}_{language}") for b in sets]
    return out


def claims(
    groups: Sequence[Group],
    transfer: Group | None = None,
    subnet: Sequence[SubnetPoint] = (),
    subnet_sets: Sequence[str] = (),
) -> list[Claim]:
    """The ticket's size, PEPSI against FFT, LTH-FT and LoRA per language (and on the transfer
    corpus), and the language-specific subnetworks."""
    out = _ticket_claim(groups)
    for g in groups:
        for s in g.sets:
            out += _versus_claim(g, s, g.name if len(g.sets) == 1 else f"{g.name} {s}")
    out += _subnet_claims(subnet, subnet_sets)
    for s in transfer.sets if transfer is not None else []:
        out += _versus_claim(transfer, s, f"{transfer.name} {s}")
    return out


def render_report(
    groups: Sequence[Group],
    title: str = "PEPSI",
    transfer: Group | None = None,
    transfer_language: str | None = None,
    subnet: Sequence[SubnetPoint] = (),
    subnet_sets: Sequence[str] = (),
    alive: Sequence[tuple[str, Mapping, str | None]] = (),
    figures: Sequence[tuple[str, str, str | None]] = (),
) -> str:
    """The Markdown section. ``alive``: (language, imp history, PNG link or None); ``figures``:
    (caption, PNG link, Markdown text of its numbers or None)."""
    lines = [f"## {title}", "", *kit.render_claims(claims(groups, transfer, subnet, subnet_sets))]
    lines += [SPARSITY_NOTE, ""]
    lines += ["### Error rates and parameters (Table 3)", "", *render_main_table(groups)]
    lines += ["### Parameters per language", "", *render_params_table(groups)]
    if transfer is not None:
        lines += [f"### Transfer to {transfer.name} (Table 4)", ""]
        lines += render_transfer_table(transfer, transfer_language or "?")
    if subnet:
        lines += ["### Language-specific subnetworks (Table 1)", ""]
        lines += render_subnet_tables(subnet, subnet_sets)
    if alive:
        lines += ["### Alive parameters per layer group (Fig. 3b)", ""]
        for language, history, link in alive:
            lines += [f"IMP on {language}:", ""]
            if link is not None:
                lines += [f"![Alive parameters per layer group, IMP on {language}]({link})", ""]
            lines += render_alive_table(history)
    for caption, link, table in figures:
        lines += [f"### {caption}", "", f"![{caption}]({link})", ""]
        if table:
            lines += [table.strip("\n"), ""]
    return kit.join_section(lines)
