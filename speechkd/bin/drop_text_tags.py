"""Remove ``<TAG>`` tokens from transcripts (GigaSpeech's ``<COMMA>``, ``<PERIOD>``,
``<QUESTIONMARK>``, ``<EXCLAMATIONPOINT>``; garbage tags ``<SIL>``, ``<MUSIC>``, ``<NOISE>``,
``<OTHER>``) and leave out the cuts left without words, as GigaSpeech's scoring does.

    python -m speechkd.bin.drop_text_tags --cuts data/manifests/gigaspeech_cuts_S.jsonl.gz \\
        --out data/manifests/gigaspeech_cuts_S_notags.jsonl.gz

Every cut left out is counted and logged (the first ids named); the output is written atomically.
"""

from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence

from lhotse import CutSet

from speechkd.data.manifest_io import open_cuts_lazy
from speechkd.errors import DataError
from speechkd.utils.atomic import save_manifest
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)
TAG = re.compile(r"<[A-Z_]+>")


def drop_tags(text: str) -> str:
    """``text`` without ``<TAG>`` tokens, whitespace normalised."""
    return " ".join(TAG.sub(" ", text).split())


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", required=True, help="input CutSet")
    parser.add_argument("--out", required=True, help="output CutSet")
    parser.add_argument("--log-file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    kept, dropped = [], []
    for cut in open_cuts_lazy(args.cuts):
        for sup in cut.supervisions:
            sup.text = drop_tags(sup.text or "")
        if all(sup.text for sup in cut.supervisions) and cut.supervisions:
            kept.append(cut)
        else:
            dropped.append(cut.id)
    if not kept:
        raise DataError(f"{args.cuts}: no cut has words once the tags are removed")
    save_manifest(CutSet.from_cuts(kept), args.out)
    logger.info(
        "%s: %d cuts kept, %d without words left out%s",
        args.cuts, len(kept), len(dropped), f" (e.g. {', '.join(dropped[:3])})" if dropped else "",
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    run_cli(main)
