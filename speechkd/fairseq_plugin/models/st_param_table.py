"""Parameter counts of the joint ST teacher and students, split as the joint ST KD paper's Table 1.

Groups (shared tensors counted once; the text encoder's layers are the speech encoder's upper
half, the decoder serves both modalities, its output projection is tied to its embeddings):

* ``speech_layers``, ``text_layers``, ``decoder_layers``: the transformer layers of wav2vec2, of
  the shared mBART encoder and of the decoder;
* ``adaptor``: the conv adaptor between them;
* ``speech_front_end``: the rest of wav2vec2 (CNN feature encoder, its LayerNorm and projection,
  the convolutional positional embedding, the encoder LayerNorm);
* ``token_embeddings`` (+ an untied output projection), ``positional_embeddings``;
* ``other``: embedding / final LayerNorms of the text encoder and the decoder.

Table 1's numbers decompose exactly this way: "params excluding embedded" are the transformer
layers and the adaptor (our 6-6-6 and 8-8-2 differ from the teacher by exactly the removed
layers' 251.93M and 268.73M), "embedded" is everything else (``embedded``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LAYER_GROUPS = ("speech_layers", "text_layers", "decoder_layers")
EMBEDDED_GROUPS = ("speech_front_end", "token_embeddings", "positional_embeddings", "other")

# Joint ST KD paper, Table 1 (millions of parameters; % of the 12-12-12 baseline).
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "12-12-12": {
        "total": 616.33,
        "embedded": 93.58,
        "non_embedded": 522.76,
        "total_pct": 100.0,
        "non_embedded_pct": 100.0,
    },
    "8-8-2": {
        "total": 347.6,
        "embedded": 93.58,
        "non_embedded": 254.02,
        "total_pct": 56.4,
        "non_embedded_pct": 48.59,
    },
    "6-6-6": {
        "total": 364.4,
        "embedded": 93.58,
        "non_embedded": 270.82,
        "total_pct": 59.12,
        "non_embedded_pct": 51.81,
    },
}
# Paper Sec. 1: the Alexa-ST model (same architecture, full mBART vocabulary), millions.
PAPER_ALEXA_ST_TOTAL = 1050.1
MBART50_VOCAB = 250054


def parameter_group(name: str) -> str:
    """The group of a (deduplicated) parameter name of the dual-input model."""
    if name.startswith("encoder.spch_encoder.w2v_encoder."):
        if ".w2v_model.encoder.layers." in name:
            return "speech_layers"
        return "speech_front_end"
    if name.startswith("encoder.spch_encoder.adaptor."):
        return "adaptor"
    if name.startswith(
        ("encoder.spch_encoder.mbart_encoder_layers.", "encoder.text_encoder.layers.")
    ):
        return "text_layers"
    if name.startswith(("decoder.spch_decoder.layers.", "decoder.text_decoder.layers.")):
        return "decoder_layers"
    if ".embed_tokens." in name or ".output_projection." in name:
        return "token_embeddings"
    if ".embed_positions." in name:
        return "positional_embeddings"
    return "other"


def count_groups(model: Any) -> dict[str, int]:
    """Parameters per group (see the module docstring) plus ``total``, ``embeddings`` (token +
    positional), ``embedded`` (the paper's: all but layers and adaptor) and ``non_embedded``."""
    counts = dict.fromkeys(LAYER_GROUPS + ("adaptor",) + EMBEDDED_GROUPS, 0)
    for name, param in model.named_parameters():  # shared parameters appear once
        counts[parameter_group(name)] += param.numel()
    counts["total"] = sum(p.numel() for p in model.parameters())
    counts["embeddings"] = counts["token_embeddings"] + counts["positional_embeddings"]
    counts["embedded"] = sum(counts[g] for g in EMBEDDED_GROUPS)
    counts["non_embedded"] = counts["total"] - counts["embedded"]
    if counts["non_embedded"] != sum(counts[g] for g in LAYER_GROUPS) + counts["adaptor"]:
        raise AssertionError("parameter groups do not add up")
    return counts


def token_tables(model: Any) -> int:
    """Distinct vocabulary-sized matrices (token embeddings, untied output projection)."""
    seen = {id(p) for n, p in model.named_parameters() if parameter_group(n) == "token_embeddings"}
    return len(seen)


def implied_vocabulary(
    embedded_millions: float, counts: Mapping[str, int], dim: int, tables: int
) -> float:
    """Vocabulary size per token table that gives ``embedded_millions`` embedded parameters
    with this model's front end, positional embeddings and norms."""
    rest = counts["embedded"] - counts["token_embeddings"]
    return (embedded_millions * 1e6 - rest) / dim / tables
