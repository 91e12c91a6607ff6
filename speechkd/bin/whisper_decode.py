"""Decode a CutSet with a saved Whisper model (greedy by default) and score it (WER/CER).

Writes ``hyp-<set>.txt``, ``ref-<set>.txt``, ``recogs-<set>.txt``, ``errs-<set>.txt``,
``<metric>-summary-<set>.txt``, ``scores-<set>.json`` and ``decode-<set>.json`` (decoding wall
time, real-time factor, model and language modules) into ``--out-dir``; for CLSR models also
``gate-usage-<set>.json`` (share of encoder/decoder positions routed to the language experts,
per language; see :mod:`speechkd.whisper.decode`).

Examples::

    python -m speechkd.bin.whisper_decode --model-dir exp/whisper/mini/model \\
        --cuts data/fbank/mini_cuts_test.jsonl.gz --set-name test \\
        --out-dir exp/whisper/mini/decode --metric wer
    # DistilWhisper: a stock Whisper plus the language modules of ca and th only
    python -m speechkd.bin.whisper_decode --model-dir exp/whisper-small \\
        --language-modules exp/distilwhisper/language_modules --languages ca th \\
        --cuts data/fbank/mini_cuts_test.jsonl.gz --set-name test --out-dir exp/distilwhisper/decode

Cuts of a language without a module are decoded by the shared (stock) path.

Per-language models (DistilWhisper's FT and LoRA-FT baselines: one model per language), each
decoding the cuts of its language into one decode directory::

    python -m speechkd.bin.whisper_decode --language-models ca=exp/ft/ca/model th=exp/ft/th/model \
        --cuts data/fbank/mini_cuts_test.jsonl.gz --set-name test --out-dir exp/ft/decode

A cut whose language has no model is an error; the models are loaded one at a time.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from pathlib import Path

from lhotse import CutSet

from speechkd.data.manifest_io import read_cuts
from speechkd.data.whisper_tokenizer import load_whisper_tokenizer
from speechkd.errors import ConfigError, DataError
from speechkd.eval.report_inputs import parse_named_list
from speechkd.eval.wer import METRICS
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging
from speechkd.whisper import clsr
from speechkd.whisper.decode import (
    GateUsage,
    decode_cuts,
    load_model_with_language_modules,
    load_whisper_model,
    write_and_score,
)
from speechkd.whisper.trainer import default_device

logger = logging.getLogger(__name__)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    models = p.add_mutually_exclusive_group(required=True)
    models.add_argument("--model-dir", help="save_pretrained Whisper model directory")
    models.add_argument(
        "--language-models",
        nargs="+",
        metavar="LANG=MODEL_DIR",
        help="one model directory per language, each decoding the cuts of its language",
    )
    p.add_argument(
        "--language-modules", default=None, help="directory of <lang>.safetensors CLSR modules"
    )
    p.add_argument(
        "--languages",
        nargs="+",
        default=None,
        help="languages to load from --language-modules, or all",
    )
    p.add_argument("--tokenizer", default=None, help="default: the (first) model directory")
    p.add_argument("--cuts", required=True, help="lhotse CutSet to decode (with references)")
    p.add_argument("--set-name", required=True)
    p.add_argument("--out-dir", required=True)
    p.add_argument("--metric", choices=METRICS, default="wer")
    p.add_argument("--max-duration", type=float, default=200.0, help="seconds per batch")
    p.add_argument("--num-beams", type=int, default=1, help="1: greedy")
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument(
        "--tokens-per-second",
        type=float,
        default=None,
        help="cap the new tokens of a cut at this many per second of its audio (a looping "
        "zero-shot hypothesis stops there); default: no cap beyond --max-new-tokens",
    )
    p.add_argument("--task", choices=("transcribe", "translate"), default="transcribe")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--no-progress", action="store_true")
    return p


def load_model(args: argparse.Namespace, device):
    """The model to decode: a saved Whisper, with language modules when asked for."""
    if args.language_modules is None:
        if args.languages is not None:
            raise ConfigError("--languages needs --language-modules")
        return load_whisper_model(args.model_dir, device)
    if args.languages is None:
        raise ConfigError("--language-modules needs --languages (codes, or all)")
    return load_model_with_language_modules(
        args.model_dir, args.language_modules, args.languages, device
    )


def decode_with_options(
    args: argparse.Namespace, model, tokenizer, cuts: CutSet, device, gate_usage=None
):
    """``decode_cuts`` of ``cuts`` with the decoding options of the command line."""
    return decode_cuts(
        model,
        tokenizer,
        cuts,
        max_duration=args.max_duration,
        num_beams=args.num_beams,
        max_new_tokens=args.max_new_tokens,
        tokens_per_second=args.tokens_per_second,
        task=args.task,
        device=device,
        progress=not args.no_progress,
        gate_usage=gate_usage,
    )


def parse_language_models(specs: list[str]) -> dict[str, str]:
    """``{lang: model dir}`` of ``--language-models LANG=MODEL_DIR ...`` (ConfigError if bad)."""
    parsed = parse_named_list(specs, "--language-models", 1, "LANG=MODEL_DIR")
    return {lang: values[0] for lang, values in parsed.items()}


def decode_per_language(
    args: argparse.Namespace, models: dict[str, str], tokenizer, cuts: CutSet, device
) -> tuple[list, float]:
    """Hypotheses (in cut order) of each language's cuts decoded by that language's model
    (``models``: language → directory), and the decoding seconds (model loading left out)."""
    found = {c.supervisions[0].language if c.supervisions else None for c in cuts}
    orphans = sorted(str(lang) for lang in found if lang not in models)
    if orphans:
        raise DataError(
            f"{args.cuts}: cuts of language(s) {', '.join(orphans)} have no --language-models "
            f"entry (given: {', '.join(models)})"
        )
    hyps, seconds = {}, 0.0
    for language, model_dir in models.items():
        subset = cuts.filter(lambda c, lang=language: c.supervisions[0].language == lang)
        subset = subset.to_eager()
        if not len(subset):
            logger.info("%s: no cut of language %s, its model is not used", args.cuts, language)
            continue
        model = load_whisper_model(model_dir, device)
        start = time.time()
        for hyp in decode_with_options(args, model, tokenizer, subset, device):
            hyps[hyp.cut_id] = hyp
        seconds += time.time() - start
        logger.info("%s: %d cuts decoded by %s", language, len(subset), model_dir)
        del model
    return [hyps[c.id] for c in cuts], seconds


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out_dir = Path(args.out_dir)
    setup_logging(out_dir / "log" / f"decode-{args.set_name}.log")
    command = "python -m speechkd.bin.whisper_decode " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    logger.info("%s", command)
    cuts = read_cuts(args.cuts)
    device = default_device(args.device)
    models = parse_language_models(args.language_models) if args.language_models else None
    if models:
        if args.language_modules is not None or args.languages is not None:
            raise ConfigError("--language-models: one plain model per language, no --language-*")
        tokenizer = load_whisper_tokenizer(args.tokenizer or next(iter(models.values())))
        languages, usage = [], None
        hyps, seconds = decode_per_language(args, models, tokenizer, cuts, device)
    else:
        tokenizer = load_whisper_tokenizer(args.tokenizer or args.model_dir)
        model = load_model(args, device)
        languages = clsr.installed_languages(model)
        usage = GateUsage() if languages else None
        start = time.time()
        hyps = decode_with_options(args, model, tokenizer, cuts, device, gate_usage=usage)
        # the teacher-forced pass for the gate statistics is not part of decoding
        seconds = time.time() - start - (usage.seconds if usage is not None else 0.0)
    audio = sum(c.duration for c in cuts)
    rtf = round(seconds / audio, 5) if audio else None
    logger.info(
        "decoded %d cuts (%.1f s of audio) in %.2f s on %s: RTF %s",
        len(cuts),
        audio,
        seconds,
        device,
        rtf,
    )
    record = {
        "set": args.set_name,
        "model_dir": str(args.model_dir) if args.model_dir else None,
        "language_models": models,
        "language_modules": args.language_modules,
        "languages": languages,
        "cuts": str(args.cuts),
        "num_utterances": len(cuts),
        "audio_seconds": round(audio, 3),
        "decode_seconds": round(seconds, 3),
        "rtf": rtf,
        "device": str(device),
        "num_beams": args.num_beams,
        "max_duration": args.max_duration,
        "command": command,
    }
    decode_json = out_dir / f"decode-{args.set_name}.json"
    atomic_write_text(decode_json, json.dumps(record, indent=1) + "\n")
    extra = {k: record[k] for k in ("model_dir", "cuts", "command", "decode_seconds", "rtf")}
    if models:
        extra["language_models"] = models
    if languages:
        extra.update(language_modules=args.language_modules, languages=languages)
    paths = write_and_score(hyps, out_dir, args.set_name, args.metric, device=str(device), **extra)
    paths["decode"] = decode_json
    if usage is not None:
        paths["gate_usage"] = usage.write(
            out_dir / f"gate-usage-{args.set_name}.json", args.set_name
        )
        for language, values in usage.per_language().items():
            logger.info(
                "gate usage %s: encoder %.3f decoder %.3f all %.3f (%d utterances)",
                language,
                values["encoder"],
                values["decoder"],
                values["all"],
                values["utterances"],
            )
    logger.info("Wrote %s", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    run_cli(main)
