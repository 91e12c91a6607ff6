"""Score hypotheses against references (WER/CER with Whisper normalisation, BLEU/chrF).

Writes ``recogs-<set>.txt``, ``errs-<set>.txt``, ``<metric>-summary-<set>.txt`` and
``scores-<set>.json`` into ``--out-dir``.

Examples::

    python -m speechkd.bin.score --ref data/test/text --hyp exp/x/decode/hyp-test.txt \\
        --set-name test --out-dir exp/x/decode --metric wer --language ca
    python -m speechkd.bin.score --ref data/fbank/mini_cuts_test.jsonl.gz --hyp hyp.txt \\
        --set-name test --out-dir exp/x/decode --metric wer
    python -m speechkd.bin.score --ref ref.txt --hyp hyp.txt --ref-cuts cuts.jsonl.gz \\
        --set-name test --out-dir decode --metric cer --allow-missing
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys

from speechkd.eval.scoring import ALL_METRICS, load_scoring_input, score_input
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--ref",
        required=True,
        help="references: Kaldi text file (utt-id text…) or lhotse CutSet/SupervisionSet",
    )
    parser.add_argument("--hyp", required=True, help="hypotheses: Kaldi text file")
    parser.add_argument("--set-name", required=True, help="name used in the output file names")
    parser.add_argument("--out-dir", required=True, help="decode directory to write into")
    parser.add_argument("--metric", choices=ALL_METRICS, default="wer")
    parser.add_argument(
        "--language", default=None, help="ISO 639-1 code of every utterance (overrides manifests)"
    )
    parser.add_argument(
        "--ref-cuts",
        default=None,
        help="lhotse CutSet/SupervisionSet giving per-utterance languages",
    )
    parser.add_argument(
        "--allow-missing",
        action="store_true",
        help="score references without a hypothesis as empty hypotheses (deletions)",
    )
    parser.add_argument(
        "--allow-empty-ref",
        action="store_true",
        help="score references that are empty after normalisation (insertions only)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = get_parser().parse_args(argv)
    data = load_scoring_input(
        args.ref,
        args.hyp,
        metric=args.metric,
        language=args.language,
        ref_cuts=args.ref_cuts,
        allow_missing=args.allow_missing,
    )
    command = "python -m speechkd.bin.score " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    paths = score_input(
        data,
        args.set_name,
        args.out_dir,
        metric=args.metric,
        allow_empty_ref=args.allow_empty_ref,
        ref=str(args.ref),
        hyp=str(args.hyp),
        command=command,
    )
    with open(paths["scores"], encoding="utf-8") as f:
        scores = json.load(f)
    logger.info(
        "%s %s on %s: %s (%s)",
        args.set_name,
        args.metric.upper(),
        args.hyp,
        scores["score"],
        paths["scores"],
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
