"""Train the CTC intelligibility probe on fbank cuts and score it on held-out sets.

Example::

    python -m speechkd.bin.check_intelligibility --train data/fbank/mini_asr_cuts_train.jsonl.gz \\
        --test test=data/fbank/mini_asr_cuts_test.jsonl.gz --language en --out-dir exp/probe
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from lhotse import CutSet

from speechkd.errors import ConfigError
from speechkd.eval.decode_files import write_error_rate_files
from speechkd.eval.intelligibility import ProbeConfig, train_and_decode
from speechkd.eval.wer import Utterance, score_utterances
from speechkd.utils.atomic import atomic_write_text
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
    args = parser.parse_args(argv)
    setup_logging(args.out_dir / "log" / "probe.log")
    if args.epochs < 1 or args.hidden < 1:
        raise ConfigError("--epochs and --hidden must be positive")
    languages = set(args.language) if args.language else None
    train = _select(CutSet.from_file(args.train), languages, None)
    tests = {}
    for item in args.test:
        name, sep, path = item.partition("=")
        if not sep:
            raise ConfigError(f"--test {item!r}: expected NAME=CUTS")
        tests[name] = _select(CutSet.from_file(path), languages, None)
    logger.info(
        "training on %d cuts; testing on %s", len(train), {k: len(v) for k, v in tests.items()}
    )
    config = ProbeConfig(epochs=args.epochs, hidden=args.hidden, seed=args.seed)
    results = train_and_decode(train, tests, config)
    summary: dict[str, dict[str, float | int]] = {}
    for name, rows in results.items():
        summary[name] = {"num_utts": len(rows)}
        for metric in ("wer", "cer"):
            utts = [Utterance(cid, ref, hyp, lang) for cid, ref, hyp, lang in rows]
            report = score_utterances(utts, metric=metric, allow_empty_ref=False)
            write_error_rate_files(
                args.out_dir / metric,
                name,
                report,
                {"*": "probe: lower-case, no punctuation"},
                command=" ".join(sys.argv),
            )
            summary[name][metric] = report.totals.rate
        logger.info(
            "%s: CER %.2f%% WER %.2f%% (%d utterances)",
            name,
            summary[name]["cer"],
            summary[name]["wer"],
            len(rows),
        )
    meta = {
        "method": "intelligibility-probe",
        "model": f"ctc-bilstm-{args.hidden}",
        "description": "CTC character model trained from scratch on the synthetic speech",
        "command": " ".join(sys.argv),
    }
    atomic_write_text(args.out_dir / "results_meta.json", json.dumps(meta, indent=1) + "\n")
    atomic_write_text(args.out_dir / "probe-summary.json", json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
