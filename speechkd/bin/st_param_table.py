"""Parameter table of the joint speech/text translation teacher and students (joint ST KD paper,
Table 1), built from ``conf/st_kd/arch`` on the meta device: no weights, no checkpoints.

Columns, in millions of parameters (tensors shared between the speech and text encoders, between
the speech and text decoders, and the decoder's tied output projection are counted once):

* ``total``: every parameter;
* ``tok+pos emb``: token embeddings (one table for the text encoder, one for the decoder, as
  fairseq's dual-input model builds them; the output projection is tied to the decoder's)
  plus the learned positional embeddings of both;
* ``embedded``: the paper's "embedded params": everything but the transformer layers and the
  adaptor, i.e. tok+pos emb, wav2vec2's CNN front end (feature encoder, projection,
  convolutional positional embedding) and the embedding / final LayerNorms;
* ``non-embedded``: the transformer layers (wav2vec2, shared mBART encoder, decoder) and the
  adaptor; ``%`` columns are of the 12-12-12 teacher.

The non-embedded counts reproduce the paper's to rounding (522.75M, 270.82M, 254.01M vs 522.76M,
270.82M, 254.02M). The embedded count depends only on the vocabulary: with mBART's 250,027 entries
it is 514M, not the paper's 93.58M, which corresponds to about 38k entries per table (printed as
"implied vocabulary"), i.e. the paper's baseline used a reduced vocabulary that the students keep
("excludes the vocabulary trimming"). With mBART-50's 250,054 entries the teacher has 1050.10M
parameters: the 1050.1M the paper's introduction gives for the full Alexa-ST model.

Examples::

    python -m speechkd.bin.st_param_table
    python -m speechkd.bin.st_param_table --vocab-size 38254 --json --output params.json
"""

from __future__ import annotations

import argparse
import json
import logging

from speechkd.errors import ConfigError
from speechkd.eval.markdown import md_text
from speechkd.utils.atomic import atomic_write_text
from speechkd.utils.cli import run_cli
from speechkd.utils.logging import setup_logging

logger = logging.getLogger(__name__)

DEFAULT_MODELS = ("teacher_12_12_12", "student_6_6_6", "student_8_8_2")
MBART_CC25_VOCAB = 250027
STUDENT_ARCH = "speechkd_dual_input_xm_student"


def measure(models: list[str], vocab_size: int, device: str = "meta") -> dict:
    """Counts of each architecture file (the first is the teacher) and the comparison with the
    paper: ``{"vocab_size", "models": {name: {...}}, "notes": {...}}``."""
    from speechkd.fairseq_plugin.models.st_param_table import (
        MBART50_VOCAB,
        PAPER_ALEXA_ST_TOTAL,
        PAPER_TABLE1,
        count_groups,
        implied_vocabulary,
        token_tables,
    )
    from speechkd.fairseq_plugin.models.st_students import (
        build_from_config,
        fairseq_train_args,
        layer_depths,
    )

    results: dict[str, dict] = {}
    teacher_counts = None
    for name in models:
        # a student counts its own layers: no teacher / pretrained checkpoint to copy them from
        is_student = fairseq_train_args(name)[1] == STUDENT_ARCH
        overrides = {"student_init": "none"} if is_student else {}
        model = build_from_config(name, vocab_size, device=device, **overrides)
        depths = layer_depths(model)
        counts = count_groups(model)
        key = "-".join(str(depths[p]) for p in ("speech", "text", "decoder"))
        teacher_counts = teacher_counts or counts
        entry = {
            "depths": key,
            "counts": counts,
            "total_pct": 100.0 * counts["total"] / teacher_counts["total"],
            "non_embedded_pct": 100.0 * counts["non_embedded"] / teacher_counts["non_embedded"],
            "paper": PAPER_TABLE1.get(key),
            "embed_dim": model.decoder.text_decoder.embed_tokens.embedding_dim,
            "token_tables": token_tables(model),
        }
        results[name] = entry
        logger.info("%s (%s): %d parameters", name, key, counts["total"])
    first = results[models[0]]
    if first["paper"] is None or first["depths"] != "12-12-12":
        # the vocabulary notes compare the paper's 12-12-12 teacher only
        return {"vocab_size": vocab_size, "models": results, "notes": {}}
    dim, tables = first["embed_dim"], first["token_tables"]
    notes = {
        "implied_vocabulary": implied_vocabulary(
            PAPER_TABLE1["12-12-12"]["embedded"], first["counts"], dim, tables
        ),
        "teacher_total_mbart50": first["counts"]["total"]
        + tables * (MBART50_VOCAB - vocab_size) * dim,
        "paper_alexa_st_total": PAPER_ALEXA_ST_TOTAL,
    }
    return {"vocab_size": vocab_size, "models": results, "notes": notes}


def _m(n: float) -> str:
    return f"{n / 1e6:.2f}"


def render(report: dict) -> str:
    """Markdown: the Table 1 comparison, the per-group breakdown, the vocabulary notes."""
    header = [
        "model",
        "SphEnc-TxtEnc-Dec",
        "total",
        "tok+pos emb",
        "embedded",
        "non-embedded",
        "% total",
        "% non-emb",
        "paper total",
        "Δ total",
        "paper non-emb",
        "Δ non-emb",
    ]
    rows = []
    for name, e in report["models"].items():
        c, paper = e["counts"], e["paper"]
        row = [
            name,
            e["depths"],
            _m(c["total"]),
            _m(c["embeddings"]),
            _m(c["embedded"]),
            _m(c["non_embedded"]),
            f"{e['total_pct']:.2f}",
            f"{e['non_embedded_pct']:.2f}",
        ]
        if paper:
            row += [
                f"{paper['total']:.2f}",
                f"{c['total'] / 1e6 - paper['total']:+.2f}",
                f"{paper['non_embedded']:.2f}",
                f"{c['non_embedded'] / 1e6 - paper['non_embedded']:+.2f}",
            ]
        else:
            row += ["-"] * 4
        rows.append(row)
    groups = [
        "speech_layers",
        "text_layers",
        "decoder_layers",
        "adaptor",
        "speech_front_end",
        "token_embeddings",
        "positional_embeddings",
        "other",
    ]
    breakdown = [
        [name] + [_m(e["counts"][g]) for g in groups] for name, e in report["models"].items()
    ]
    notes = report["notes"]
    text = [
        f"### Joint ST parameters (millions; vocabulary {report['vocab_size']:,} per token table)",
        md_text(header, rows),
        "### By part (millions)",
        md_text(["model"] + groups, breakdown),
    ]
    if notes:
        text.append(
            f"Paper's embedded 93.58M implies a vocabulary of {notes['implied_vocabulary']:,.0f} "
            f"per token table; with mBART-50's 250,054 the teacher has "
            f"{notes['teacher_total_mbart50'] / 1e6:.2f}M parameters (paper Sec. 1, Alexa-ST: "
            f"{notes['paper_alexa_st_total']}M)."
        )
    return "\n\n".join(text)


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=MBART_CC25_VOCAB,
        help="entries of each token table (default: mbart.cc25's 250027)",
    )
    parser.add_argument(
        "--models",
        default=",".join(DEFAULT_MODELS),
        help="architecture files (conf/st_kd/arch names or paths), teacher first",
    )
    parser.add_argument(
        "--device",
        default="meta",
        choices=["meta", "cpu"],
        help="meta: count without allocating; cpu: build random weights",
    )
    parser.add_argument("--json", action="store_true", help="print/write JSON instead of markdown")
    parser.add_argument("--output", default=None, help="file to write (atomically)")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging()
    models = [m for m in args.models.split(",") if m]
    if not models:
        raise ConfigError("--models: no architecture given")
    report = measure(models, args.vocab_size, args.device)
    text = json.dumps(report, indent=2) if args.json else render(report)
    print(text)
    if args.output:
        atomic_write_text(args.output, text + "\n")


if __name__ == "__main__":
    run_cli(main)
