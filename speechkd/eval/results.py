"""RESULTS.md from the ``scores-*.json`` files of experiment directories.

An experiment directory is the nearest ancestor of a scores file holding ``results_meta.json``
(keys, all optional: ``method``, ``model``, ``description``, ``command`` or ``commands``,
``trainable_params``, ``total_params``); without one it is ``<exp>/<method>/<model>`` taken from
the path. RESULTS.md opens with what the run shows (the claims blocks of the extra Markdown
sections read from files, e.g. a method's report made by ``speechkd.bin.distilwhisper_report``),
then those sections (the main tables); the per-method tables (per-language WER/CER columns with
the average; BLEU/chrF with the sacrebleu signature) stand there only when no section has claims.
RESULTS-details.md beside it holds the environment and git revision, an experiments table, the
exact commands, the per-method tables otherwise and an sclite-style table per set. No absolute
path is left in either. Ordering is deterministic. The RESULTS.json written beside each section
by its report are merged into one beside RESULTS.md.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from speechkd.errors import DataError
from speechkd.eval.decode_files import sclite_row
from speechkd.eval.markdown import md_cell, md_table
from speechkd.eval.report_kit import DASH, relative_paths, repo_root, rule_note, split_claims
from speechkd.eval.results_json import merge_results_json
from speechkd.eval.wer import ErrorCounts
from speechkd.utils.atomic import atomic_write_text

META_FILE = "results_meta.json"
ERROR_RATE_METRICS = ("wer", "cer")


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read JSON ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


@dataclass
class Experiment:
    """One experiment directory with its metadata."""

    root: Path
    rel: str
    method: str
    model: str
    meta: dict = field(default_factory=dict)

    @property
    def commands(self) -> list[str]:
        cmds = self.meta.get("commands", self.meta.get("command", []))
        return [cmds] if isinstance(cmds, str) else [str(c) for c in cmds]


@dataclass
class ScoreEntry:
    """One ``scores-<set>.json`` file of an experiment."""

    experiment: Experiment
    path: Path
    decode: str
    payload: dict

    @property
    def set_name(self) -> str:
        return str(self.payload["set"])

    @property
    def metric(self) -> str:
        return str(self.payload["metric"])

    @property
    def system(self) -> str:
        """Row label: the model, plus the decode dir below the experiment dir if any."""
        return (
            self.experiment.model
            if self.decode == "."
            else f"{self.experiment.model} ({self.decode})"
        )

    def sort_key(self) -> tuple:
        e = self.experiment
        return (e.method, e.model, e.rel, self.decode, self.set_name, self.metric)


def _experiment_for(scores: Path, exp_root: Path, cache: dict[Path, Experiment]) -> Experiment:
    directory = scores.parent
    chain = [directory, *directory.parents]
    root_index = chain.index(exp_root) if exp_root in chain else len(chain) - 1
    for candidate in chain[: root_index + 1]:
        if (candidate / META_FILE).is_file():
            exp_dir = candidate
            break
    else:
        parts = directory.relative_to(exp_root).parts
        exp_dir = exp_root.joinpath(*parts[:2]) if parts else exp_root
    if exp_dir not in cache:
        meta = _load_json(exp_dir / META_FILE) if (exp_dir / META_FILE).is_file() else {}
        rel_parts = exp_dir.relative_to(exp_root).parts
        rel = "/".join((exp_root.name, *rel_parts))
        method = str(meta.get("method") or (rel_parts[0] if rel_parts else exp_root.name))
        model = str(meta.get("model") or (rel_parts[1] if len(rel_parts) > 1 else method))
        cache[exp_dir] = Experiment(exp_dir, rel, method, model, meta)
    return cache[exp_dir]


def collect_scores(exp_dirs: Iterable[str | os.PathLike]) -> list[ScoreEntry]:
    """Every ``scores-*.json`` under ``exp_dirs``, with its experiment, sorted."""
    entries: list[ScoreEntry] = []
    cache: dict[Path, Experiment] = {}
    for exp_dir in exp_dirs:
        root = Path(exp_dir).resolve()
        if not root.is_dir():
            raise DataError(f"{exp_dir}: experiment directory not found")
        for path in sorted(root.rglob("scores-*.json")):
            if path.name.startswith(".tmp-"):
                continue
            payload = _load_json(path)
            for key in ("set", "metric", "score"):
                if key not in payload:
                    raise DataError(f"{path}: field {key!r} missing")
            experiment = _experiment_for(path, root, cache)
            decode = path.parent.relative_to(experiment.root).as_posix()
            entries.append(ScoreEntry(experiment, path, decode, payload))
    return sorted(entries, key=ScoreEntry.sort_key)


def _num(x: object) -> str:
    return DASH if x is None else f"{float(x):.2f}"


def _params(meta: dict, key: str) -> str:
    value = meta.get(key)
    if value is None:
        return DASH
    if isinstance(value, int | float):
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{int(value):,}"
    return str(value)


def render_environment(env: dict, git: dict | None) -> list[str]:
    lines = ["## Environment", ""]
    rows = [("Python", env.get("python", DASH))]
    rows += [(name, version) for name, version in env.get("packages", {}).items()]
    rows += [
        ("CPU", env.get("cpu", DASH)),
        ("GPU", ", ".join(env.get("gpus") or []) or "none"),
        ("OS", env.get("os", DASH)),
    ]
    if git is None:
        rows.append(("git", "not a git checkout"))
    else:
        rows.append(("git", f"{git['hash']}{' (dirty)' if git.get('dirty') else ''}"))
    lines += md_table(("Item", "Value"), rows)
    return lines + [""]


def render_experiments(entries: Sequence[ScoreEntry]) -> list[str]:
    experiments = sorted(
        {id(e.experiment): e.experiment for e in entries}.values(),
        key=lambda e: (e.method, e.model, e.rel),
    )
    rows = [
        (
            e.method,
            e.model,
            e.meta.get("description", DASH),
            _params(e.meta, "trainable_params"),
            _params(e.meta, "total_params"),
            f"`{e.rel}`",
        )
        for e in experiments
    ]
    header = ("Method", "Model", "Description", "Trainable params", "Total params", "Directory")
    return ["## Experiments", "", *md_table(header, rows), ""]


def render_commands(entries: Sequence[ScoreEntry], extra_commands: Sequence[str]) -> list[str]:
    lines = ["## Commands", ""]
    if extra_commands:
        lines += ["```bash", *extra_commands, "```", ""]
    seen: set[str] = set()
    for entry in entries:
        e = entry.experiment
        if e.rel in seen:
            continue
        seen.add(e.rel)
        own = [s for s in entries if s.experiment is e]
        commands = list(
            dict.fromkeys(
                e.commands + [str(s.payload["command"]) for s in own if "command" in s.payload]
            )
        )
        if commands:
            lines += [f"`{e.rel}` ({e.method}, {e.model}):", "", "```bash", *commands, "```", ""]
    return lines


def _error_rate_table(entries: Sequence[ScoreEntry]) -> list[str]:
    metric = entries[0].metric.upper()
    languages = sorted({lang for e in entries for lang in e.payload.get("per_language", {})})
    header = ["System", "Set", *languages, "Avg", f"{metric} (all)", "Normaliser"]
    rows = []
    for e in entries:
        per_language = e.payload.get("per_language", {})
        cells = [
            _num(per_language[lang].get("rate")) if lang in per_language else DASH
            for lang in languages
        ]
        rows.append(
            [
                e.system,
                e.set_name,
                *cells,
                _num(e.payload.get("macro_average")),
                _num(e.payload["score"]),
                e.payload.get("normalizer", DASH),
            ]
        )
    return [
        f"{metric} (%), per language; Avg is the mean over languages, (all) is pooled.",
        "",
        *md_table(header, rows),
        "",
    ]


def _translation_table(entries: Sequence[ScoreEntry]) -> list[str]:
    metric = entries[0].metric
    name = "BLEU" if metric == "bleu" else "chrF"
    languages = sorted({lang for e in entries for lang in e.payload.get("per_language", {})})
    header = ["System", "Set", name, *languages, "Signature"]
    rows = []
    for e in entries:
        per_language = e.payload.get("per_language", {})
        cells = [
            _num(per_language[lang]["score"]) if lang in per_language else DASH
            for lang in languages
        ]
        rows.append(
            [
                e.system,
                e.set_name,
                _num(e.payload["score"]),
                *cells,
                f"`{e.payload.get('signature', DASH)}`",
            ]
        )
    return [f"{name} (sacrebleu).", "", *md_table(header, rows), ""]


def render_method_tables(entries: Sequence[ScoreEntry]) -> list[str]:
    lines = ["## Results per method", ""]
    by_method: dict[str, list[ScoreEntry]] = defaultdict(list)
    for e in entries:
        by_method[e.experiment.method].append(e)
    for method in sorted(by_method):
        lines += [f"### {method}", ""]
        by_metric: dict[str, list[ScoreEntry]] = defaultdict(list)
        for e in by_method[method]:
            by_metric[e.metric].append(e)
        for metric in sorted(by_metric):
            group = by_metric[metric]
            if metric in ERROR_RATE_METRICS:
                lines += _error_rate_table(group)
            else:
                lines += _translation_table(group)
    return lines


def render_sclite_tables(entries: Sequence[ScoreEntry]) -> list[str]:
    lines = ["## sclite summaries per set", ""]
    by_set: dict[tuple[str, str], list[ScoreEntry]] = defaultdict(list)
    for e in entries:
        if e.metric in ERROR_RATE_METRICS:
            by_set[(e.set_name, e.metric)].append(e)
    for set_name, metric in sorted(by_set):
        lines += [f"### {set_name} ({metric.upper()})", ""]
        lines.append("| System | Snt | Wrd | Corr | Sub | Del | Ins | Err | S.Err |")
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for e in by_set[(set_name, metric)]:
            counts = ErrorCounts.from_dict(e.payload["totals"])
            label = f"{e.experiment.method}: {e.system}"
            lines.append(sclite_row(md_cell(label), counts))
        lines.append("")
    return lines


def details_path(out: str | os.PathLike) -> Path:
    """``RESULTS-details.md`` beside ``RESULTS.md`` (``<stem>-details<suffix>`` in general)."""
    out = Path(out)
    return out.with_name(f"{out.stem}-details{out.suffix}")


def _section_title(text: str) -> str:
    return next((line[3:].strip() for line in text.splitlines() if line.startswith("## ")), "")


def render_claims_section(sections: Sequence[str]) -> tuple[list[str], list[str]]:
    """ "What this run shows" from the claims blocks of ``sections`` (each under its section's
    title when several have one) and the sections without those blocks."""
    found = [(s, *split_claims(s)) for s in sections]
    with_claims = [(s, block) for s, block, _ in found if block]
    rest = [r for _, _, r in found]
    if not with_claims:
        return [], rest
    lines = ["## What this run shows", "", rule_note(), ""]
    for section, block in with_claims:
        if len(with_claims) > 1:
            lines += [f"**{_section_title(section)}**", ""]
        lines += [*block, ""]
    return lines, rest


def render_results(
    entries: Sequence[ScoreEntry],
    env: dict,
    git: dict | None,
    title: str = "Results",
    extra_commands: Sequence[str] = (),
    extra_sections: Sequence[str] = (),
    details_name: str = "RESULTS-details.md",
) -> str:
    """The Markdown text of RESULTS.md: what the run shows (the sections' claims), then the
    sections; the per-method tables only when no section has claims (a method report's tables
    hold the same numbers). The rest is in :func:`render_details`."""
    del env, git, extra_commands  # in the details
    lines = [f"# {title}", "", "Generated by `python -m speechkd.bin.write_results`."]
    lines += [
        f"Environment, commands, experiments and sclite-style tables per set: "
        f"[{details_name}]({details_name}).",
        "",
    ]
    sections = [s.strip("\n") + "\n" for s in extra_sections if s.strip()]
    claims, sections = render_claims_section(sections)
    lines += claims
    if not entries:
        lines += ["No scores found.", ""]
    elif not claims:
        lines += render_method_tables(entries)
    lines += sections
    return "\n".join(lines).rstrip("\n") + "\n"


def render_details(
    entries: Sequence[ScoreEntry],
    env: dict,
    git: dict | None,
    title: str = "Results",
    extra_commands: Sequence[str] = (),
    method_tables: bool = False,
    results_name: str = "RESULTS.md",
) -> str:
    """The Markdown text of RESULTS-details.md: environment and git revision, experiments, the
    exact commands, the per-method tables (with ``method_tables``) and the sclite tables."""
    lines = [f"# {title}: details", "", "Generated by `python -m speechkd.bin.write_results`; "]
    lines[-1] += f"what the run shows: [{results_name}]({results_name})."
    lines += [""]
    lines += render_environment(env, git)
    if not entries:
        lines += ["No scores found.", ""]
        if extra_commands:
            lines += render_commands(entries, extra_commands)
    else:
        lines += render_experiments(entries)
        lines += render_commands(entries, extra_commands)
        if method_tables:
            lines += render_method_tables(entries)
        lines += render_sclite_tables(entries)
    return "\n".join(lines).rstrip("\n") + "\n"


def read_commands_file(path: str | os.PathLike) -> list[str]:
    """Non-empty lines of a commands log."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: commands file not found")
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def _rebase_link(target: str, src_dir: Path, out_dir: Path) -> str:
    if target.startswith(("#", "/")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target):
        return target
    return Path(os.path.relpath((src_dir / target).resolve(), out_dir.resolve())).as_posix()


def read_section_file(path: str | os.PathLike, out_dir: str | os.PathLike = ".") -> str:
    """A Markdown section; its relative links and images are rebased from its own directory to
    ``out_dir`` (where RESULTS.md is written), so they keep pointing at the same files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: section file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read section ({err})") from None
    src_dir, dest = path.parent, Path(out_dir)
    return _LINK.sub(
        lambda m: m.group(1) + _rebase_link(m.group(2), src_dir, dest) + m.group(3), text
    )


def write_results(
    exp_dirs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    title: str = "Results",
    commands_files: Sequence[str | os.PathLike] = (),
    env: dict | None = None,
    git: dict | None = None,
    repo_dir: str | os.PathLike = ".",
    section_files: Sequence[str | os.PathLike] = (),
) -> Path:
    """Collect scores under ``exp_dirs`` and write RESULTS.md atomically to ``out`` and
    RESULTS-details.md beside it (:func:`details_path`), every absolute path written relative to
    the directory of ``out``.

    ``section_files`` are Markdown files inserted, in the given order, after the per-method
    tables; the RESULTS.json files beside them are merged into RESULTS.json beside ``out``
    (:func:`speechkd.eval.results_json.merge_results_json`).
    """
    from speechkd.eval.env import collect_environment, git_revision

    entries = collect_scores(exp_dirs)
    env = collect_environment() if env is None else env
    git = git_revision(repo_dir) if git is None else git
    commands = [c for f in commands_files for c in read_commands_file(f)]
    out, details = Path(out), details_path(out)
    sections = [read_section_file(f, out.parent) for f in section_files]
    text = render_results(entries, env, git, title, commands, sections, details_name=details.name)
    has_claims = any(split_claims(s)[0] for s in sections)
    details_text = render_details(
        entries, env, git, title, commands, method_tables=has_claims, results_name=out.name
    )
    root = repo_root(out.parent) or repo_root(repo_dir)
    atomic_write_text(details, relative_paths(details_text, out.parent, root))
    atomic_write_text(out, relative_paths(text, out.parent, root))
    merge_results_json(section_files, out)
    return out
