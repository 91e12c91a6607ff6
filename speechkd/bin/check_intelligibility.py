"""Train the CTC intelligibility probe on fbank cuts and score it on held-out sets.

Example::

    python -m speechkd.bin.check_intelligibility --train data/fbank/mini_asr_cuts_train.jsonl.gz \\
        --test test=data/fbank/mini_asr_cuts_test.jsonl.gz --language en --out-dir exp/probe
    # espeak-ng phones as units (phone error rate), trained with LF-MMI against a denominator
    # graph made by speechkd.bin.make_den_graph (CTC topology, same phones.txt)
    python -m speechkd.bin.check_intelligibility ... --phones data/lang_phone_en/phones.txt \\
        --espeak-voice en --loss mmi --den-graph data/lang_phone_en/den.fst.txt

Characters: CER and WER are written to OUT/cer and OUT/wer. Phones: the phone error rate is
written to OUT/per (the "wer" of the space-separated phone sequences).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

from lhotse import CutSet

from speechkd.data.manifest_io import read_cuts
from speechkd.errors import ConfigError
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.intelligibility import ProbeConfig, Units, train_and_decode
from speechkd.eval.wer import Utterance, score_utterances
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def _select(cuts: CutSet, languages: set[str] | None, conditions: set[str] | None) -> CutSet:
    def keep(cut) -> bool:
        sup = cut.supervisions[0]
        if languages and sup.language not in languages:
            return False
        return not conditions or (sup.custom or {}).get("condition") in conditions

    return cuts.filter(keep).to_eager()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--train", required=True, help="CutSet with stored features")
    parser.add_argument("--test", action="append", required=True, help="NAME=CUTS (repeatable)")
    parser.add_argument("--language", action="append", help="keep only these languages")
    parser.add_argument("--out-dir", required=True, type=Path)
    parser.add_argument("--epochs", type=int, default=ProbeConfig.epochs)
    parser.add_argument("--hidden", type=int, default=ProbeConfig.hidden)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--phones", type=Path, help="phones.txt: espeak-ng phones as units")
    parser.add_argument(
        "--chars", type=Path, help="phones.txt of --unit char ('|' = space): fixed character units"
    )
    parser.add_argument("--espeak-voice", default="en", help="voice that phonemises transcripts")
    parser.add_argument("--loss", choices=["ctc", "mmi"], default="ctc")
    parser.add_argument("--den-graph", type=Path, help="den.fst.txt (CTC topology) for --loss mmi")
    parser.add_argument(
        "--decode",
        choices=["greedy", "graph"],
        help="greedy CTC or frame posteriors under --den-graph (default: graph for mmi)",
    )
    args = parser.parse_args(argv)
    command = "python -m speechkd.bin.check_intelligibility " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    setup_logging(args.out_dir / "log" / "probe.log")
    if args.epochs < 1 or args.hidden < 1:
        raise ConfigError("--epochs and --hidden must be positive")
    languages = set(args.language) if args.language else None
    train = _select(read_cuts(args.train), languages, None)
    tests = {}
    for item in args.test:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--test {item!r}: expected NAME=CUTS")
        tests[name] = _select(read_cuts(path), languages, None)
    logger.info(
        "training on %d cuts; testing on %s", len(train), {k: len(v) for k, v in tests.items()}
    )
    if args.loss == "mmi" and (args.den_graph is None or not (args.phones or args.chars)):
        raise ConfigError("--loss mmi needs --den-graph and the unit table (--phones or --chars)")
    if args.phones and args.chars:
        raise ConfigError("give --phones or --chars, not both")
    units = None
    if args.phones:
        units = Units.espeak_phones(args.phones, args.espeak_voice)
    elif args.chars:
        units = Units.character_table(args.chars)
    phone_units = args.phones is not None
    den_graph = None
    if args.den_graph is not None:
        from speechkd.mmi import Fsa  # noqa: PLC0415

        den_graph = Fsa.from_openfst(args.den_graph.read_text(encoding="utf-8"))
    decode = args.decode or ("graph" if args.loss == "mmi" else "greedy")
    config = ProbeConfig(
        epochs=args.epochs, hidden=args.hidden, seed=args.seed, loss=args.loss, decode=decode
    )
    results = train_and_decode(train, tests, config, units, den_graph)
    metrics = {"per": "wer"} if phone_units else {"wer": "wer", "cer": "cer"}
    summary: dict[str, dict[str, float | int]] = {}
    for name, rows in results.items():
        summary[name] = {"num_utts": len(rows)}
        utts = [Utterance(cid, ref, hyp, lang) for cid, ref, hyp, lang in rows]
        for label, metric in metrics.items():
            report = score_utterances(utts, metric=metric, allow_empty_ref=False)
            write_error_rate_files(
                args.out_dir / label,
                name,
                report,
                {"*": "probe: lower-case, no punctuation"},
                command=command,
            )
            summary[name][label] = report.totals.rate
        rates = ", ".join(f"{k.upper()} {summary[name][k]:.2f}%" for k in metrics)
        logger.info("%s: %s (%d utterances)", name, rates, len(rows))
    unit_name = "phone" if phone_units else "char"
    meta = {
        "method": "intelligibility-probe",
        "model": f"conv{args.hidden}-{unit_name}-{args.loss}-{decode}",
        "description": f"{args.loss.upper()} {unit_name} model trained from scratch on the "
        f"synthetic speech, {decode} decoding",
        "command": command,
    }
    atomic_write_text(args.out_dir / "results_meta.json", json.dumps(meta, indent=1) + "\n")
    atomic_write_text(args.out_dir / "probe-summary.json", json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
