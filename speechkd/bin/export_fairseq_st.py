"""Export speech-translation cuts to fairseq's raw-audio speech_to_text / speech_text_joint format.

    # mini: one run writes train/dev/test tsv, spm.model, dict.txt, config_st.yaml and the
    # mBART denoising text (English/German raw text + the ST training text)
    python -m speechkd.bin.export_fairseq_st \\
        --cuts data/manifests/mini_st_cuts_{train,dev,test}.jsonl.gz --split train dev test \\
        --out-dir data/fairseq_st --spm-vocab-size 1000 \\
        --text en=data/text/mini_raw_en.txt de=data/text/mini_raw_de.txt --denoising-text

    # the paper's corpus: MuST-C v2 + CoVoST 2 + Europarl-ST en-de train, 1% held out as dev
    python -m speechkd.bin.export_fairseq_st \\
        --cuts data/manifests/{mustc_cuts_en-de_train,covost2_cuts_en-de_train}.jsonl.gz \\
               data/manifests/europarl_st_cuts_en-de_train.jsonl.gz \\
               data/manifests/mustc_cuts_en-de_tst-COMMON.jsonl.gz \\
        --split train train train tst-COMMON --out-dir data/fairseq_st_ende

``--cuts`` and ``--split`` pair up (several manifests of one split are concatenated). Training
clips shorter than 50 ms or longer than 30 s are dropped and counted; without a ``dev`` split 1% of
train is held out as ``dev`` (by cut-id hash). The whole output directory is replaced atomically.
A downloaded mBART is used with ``--spm-model sentence.bpe.model --spm-dict dict.txt --mbart-langs
ar_AR,cs_CZ,...`` (its ``--langs``, in order) instead of training a sentencepiece model.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from speechkd.data.fairseq_st_export import ExportOptions, export_fairseq_st
from speechkd.errors import ConfigError
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m speechkd.bin.export_fairseq_st",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cuts", type=Path, nargs="+", required=True, help="ST cut manifests")
    parser.add_argument(
        "--split", nargs="+", required=True, help="split name of each --cuts file (same order)"
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="output directory")
    parser.add_argument("--spm-vocab-size", type=int, default=8000, help="sentencepiece vocab")
    parser.add_argument("--spm-model-type", default="unigram", choices=("unigram", "bpe"))
    parser.add_argument(
        "--text",
        nargs="*",
        default=[],
        metavar="LANG=FILE",
        help="extra monolingual text (sentencepiece and denoising data), e.g. en=raw_en.txt",
    )
    parser.add_argument(
        "--denoising-text",
        action="store_true",
        help="also write mbart_text/: spm-encoded text per language for mBART pretraining",
    )
    parser.add_argument("--spm-model", type=Path, default=None, help="existing spm model")
    parser.add_argument("--spm-dict", type=Path, default=None, help="its fairseq dict.txt")
    parser.add_argument(
        "--mbart-langs", default=None, help="mBART --langs list, in order (default: from data)"
    )
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--heldout-split", default="dev", help="held-out split name")
    parser.add_argument("--heldout-fraction", type=float, default=0.01)
    parser.add_argument("--min-duration", type=float, default=0.05, help="seconds")
    parser.add_argument("--max-duration", type=float, default=30.0, help="seconds")
    parser.add_argument(
        "--filter-eval", action="store_true", help="apply the duration filter to all splits"
    )
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--audio-mode", default="auto", choices=("auto", "zip"))
    parser.add_argument(
        "--standardize-audio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="config: zero-mean/unit-variance waveforms, as the wav2vec2 model was pretrained "
        "(normalize: true for large/XLS-R/the tiny teacher; --no-standardize-audio for base)",
    )
    parser.add_argument("--tgt-lang", default=None, help="target language of cuts lacking one")
    parser.add_argument("--log-file", type=Path, default=None)
    return parser


def parse_text_args(items: list[str]) -> dict[str, list[Path]]:
    """``["en=a.txt", "en=b.txt", "de=c.txt"]`` -> ``{"en": [a, b], "de": [c]}``."""
    text: dict[str, list[Path]] = {}
    for item in items:
        lang, sep, path = item.partition("=")
        if not sep or not lang or not path:
            raise ConfigError(f"--text {item!r}: expected LANG=FILE")
        text.setdefault(lang, []).append(Path(path))
    return text


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_file)
    if len(args.cuts) != len(args.split):
        raise ConfigError(
            f"--cuts has {len(args.cuts)} file(s) but --split has {len(args.split)} name(s)"
        )
    cuts: dict[str, list[Path]] = {}
    for path, split in zip(args.cuts, args.split, strict=True):
        cuts.setdefault(split, []).append(path)
    options = ExportOptions(
        train_split=args.train_split,
        heldout_split=args.heldout_split,
        heldout_fraction=args.heldout_fraction,
        min_duration=args.min_duration,
        max_duration=args.max_duration,
        filter_eval=args.filter_eval,
        sample_rate=args.sample_rate,
        audio_mode=args.audio_mode,
        spm_vocab_size=args.spm_vocab_size,
        spm_model_type=args.spm_model_type,
        standardize_audio=args.standardize_audio,
        default_tgt_lang=args.tgt_lang,
    )
    mbart_langs = args.mbart_langs.split(",") if args.mbart_langs else None
    result = export_fairseq_st(
        cuts,
        args.out_dir,
        options,
        text=parse_text_args(args.text),
        denoising_text=args.denoising_text,
        spm_model=args.spm_model,
        spm_dict=args.spm_dict,
        mbart_langs=mbart_langs,
    )
    logger.info(
        "Wrote %s: splits %s, languages %s (mBART %s)",
        result.out_dir,
        ", ".join(result.tsv),
        ", ".join(result.langs),
        ",".join(result.mbart_langs),
    )
    return 0


if __name__ == "__main__":
    run_cli(main)
