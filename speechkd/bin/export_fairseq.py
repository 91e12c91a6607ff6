"""Export lhotse CutSets to fairseq audio manifests and labels (wav2vec 2.0 teacher training).

    # labelled fine-tuning data: train.{tsv,wrd,ltr,phn} + dict.{ltr,phn}.txt
    python -m speechkd.bin.export_fairseq --cuts data/manifests/mini_asr_cuts_train.jsonl.gz \\
        --split train --language en --lexicon data/lang_phone_en/lexicon.txt \\
        --out-dir data/fairseq/asr_en
    python -m speechkd.bin.export_fairseq --cuts data/manifests/mini_asr_cuts_dev.jsonl.gz \\
        --split dev --language en --lexicon data/lang_phone_en/lexicon.txt \\
        --out-dir data/fairseq/asr_en
    # unlabelled pre-training / distillation pool: the union of several CutSets
    python -m speechkd.bin.export_fairseq --no-labels --split train --language en \\
        --cuts data/manifests/mini_{asr,st}_cuts_train.jsonl.gz --out-dir data/fairseq/pool

The phone table (``phones.txt``, default: beside the lexicon) makes ``dict.phn.txt`` list every
phone of the table, so that the output layer covers every pdf of the denominator graph.
Dictionaries are written with the train split (``--dicts auto``) or as asked. A word missing
from the lexicon is an error naming the cut, unless ``--skip-oov`` leaves such cuts out.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from speechkd.data.fairseq_export import export_fairseq, load_cut_union, select_cuts
from speechkd.errors import ConfigError, DataError
from speechkd.mmi.lexicon import Lexicon, read_phone_table
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.export_fairseq",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cuts", type=Path, nargs="+", required=True, help="input CutSet(s)")
    parser.add_argument("--split", required=True, help="split name: <split>.tsv, <split>.ltr, ...")
    parser.add_argument("--out-dir", type=Path, required=True, help="fairseq data directory")
    parser.add_argument("--language", default=None, help="keep only cuts of this language")
    parser.add_argument("--lexicon", type=Path, default=None, help="lexicon.txt for <split>.phn")
    parser.add_argument(
        "--phones", type=Path, default=None,
        help="phones.txt checking the phones and listed in dict.phn.txt (default: beside the "
        "lexicon, if there)",
    )  # fmt: skip
    parser.add_argument("--no-labels", action="store_true", help="write only <split>.tsv")
    parser.add_argument(
        "--skip-oov", action="store_true", help="leave out cuts with words not in the lexicon"
    )
    parser.add_argument(
        "--dicts", choices=("auto", "write", "skip"), default="auto",
        help="write dict.{ltr,phn}.txt: auto = for --split train only",
    )  # fmt: skip
    parser.add_argument(
        "--path-prefix", type=Path, default=None,
        help="directory relative audio paths of the manifests are relative to (default: .)",
    )  # fmt: skip
    parser.add_argument("--log-file", type=Path, default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    if args.no_labels and (args.lexicon or args.skip_oov):
        raise ConfigError("--no-labels writes no labels: drop --lexicon/--skip-oov")
    lexicon = phones = None
    if args.lexicon is not None:
        lexicon = Lexicon.from_kaldi(args.lexicon)
        phones_txt = args.phones or args.lexicon.parent / "phones.txt"
        if args.phones is not None or phones_txt.is_file():
            phones = read_phone_table(phones_txt)
    elif args.phones is not None:
        raise ConfigError("--phones needs --lexicon")
    cuts = select_cuts(load_cut_union(args.cuts), args.language)
    if not cuts:
        raise DataError(f"{' '.join(map(str, args.cuts))}: no cuts of language {args.language}")
    write_dicts = args.dicts == "write" or (args.dicts == "auto" and args.split == "train")
    export_fairseq(
        cuts,
        args.out_dir,
        args.split,
        lexicon=lexicon,
        phones=phones,
        labels=not args.no_labels,
        skip_oov=args.skip_oov,
        write_dicts=write_dicts,
        path_prefix=args.path_prefix,
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
