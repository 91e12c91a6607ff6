"""LF-MMI in PyTorch: FSA tensors, exact batched intersection backends, graphs and losses.

``Fsa(arcs, scores, final)`` is an epsilon-free acceptor over pdf labels;
``total_scores(graphs, log_likes, lengths, backend="auto")`` intersects it (one shared graph or one
per utterance) with dense log-likelihoods; ``ctc_graph``, ``ctc_topo``, ``chain_topo`` and
``compose_lm_topology`` build numerator and denominator graphs; ``LFMMILoss`` and
``MMIDistillLoss`` are the losses; ``build_denominator`` makes a denominator graph from raw text
(lexicon, text to phones, Kaldi chain-style phone LM, topology).
"""

from speechkd.mmi.arpa import arpa_to_fsa
from speechkd.mmi.denominator import build_denominator, build_phone_lm
from speechkd.mmi.fsa import Fsa
from speechkd.mmi.graphs import ctc_graph, linear_graph
from speechkd.mmi.intersect import occupation_posteriors, total_scores
from speechkd.mmi.k2_backend import k2_available
from speechkd.mmi.leaky_hmm import expand_leaky_hmm, leaky_hmm_distribution
from speechkd.mmi.lexicon import Lexicon
from speechkd.mmi.loss import LFMMILoss, MMIDistillLoss, MMIOutput
from speechkd.mmi.phone_lm import estimate_phone_lm
from speechkd.mmi.teacher_numerators import (
    ctc_best_path_graphs,
    frame_best_path_graphs,
    mask_log_likes,
    posterior_mask,
)
from speechkd.mmi.topology import Topology, chain_topo, compose_lm_topology, ctc_topo

__all__ = [
    "Fsa",
    "Lexicon",
    "LFMMILoss",
    "MMIDistillLoss",
    "MMIOutput",
    "Topology",
    "arpa_to_fsa",
    "build_denominator",
    "build_phone_lm",
    "chain_topo",
    "compose_lm_topology",
    "ctc_best_path_graphs",
    "ctc_graph",
    "ctc_topo",
    "estimate_phone_lm",
    "expand_leaky_hmm",
    "frame_best_path_graphs",
    "k2_available",
    "leaky_hmm_distribution",
    "linear_graph",
    "mask_log_likes",
    "occupation_posteriors",
    "posterior_mask",
    "total_scores",
]
