"""fairseq criterion ``speechkd_lfmmi``: LF-MMI fine-tuning of a CTC-topology wav2vec 2.0 model.

DistillW2V2 fine-tunes its teacher with LF-MMI instead of CTC. Here the model is fairseq's stock
``wav2vec_ctc`` (one output per symbol of ``dict.phn.txt``) and the pdfs are those of the CTC
topology of a phone table: pdf 0 is the blank and pdf ``p`` the phone with id ``p`` in
``phones.txt`` (``<eps> 0`` marks the blank). The criterion

1. maps the target dictionary to pdfs: the blank is the dictionary's ``<s>`` (index 0, the blank
   of fairseq's ``ctc`` criterion), every other symbol its ``phones.txt`` id; a dictionary
   symbol that is not a phone, or a phone without a dictionary entry, is a ``ConfigError``;
2. selects the model's output columns in pdf order, takes their log-softmax as the pdf
   log-likelihoods and scores them with :class:`speechkd.mmi.LFMMILoss` against the numerator
   graphs :func:`speechkd.mmi.ctc_graph` of the targets and the shared denominator graph
   (``den.fst.txt``, OpenFst text with pdf ``p`` written as ``p + 1``), with Kaldi's leaky HMM
   and optional cross-entropy and output-L2 regularisers.

The loss is summed over utterances; ``sample_size`` is the number of target tokens (or of
sentences with ``optimization.sentence_avg``), as in fairseq's ``ctc`` criterion, and fairseq
reports ``loss`` per sample in bits. Also logged: the numerator and denominator log scores per
frame (``mmi_num``, ``mmi_den``, nats), the MMI objective per frame (``mmi_objf``) and the number
of utterances left out for lack of a numerator/denominator path (``mmi_failed``).

In validation the greedy (best-path) phone sequence gives ``c_errors`` / ``c_total`` and the phone
error rate ``uer`` (alias ``per``), so ``checkpoint.best_checkpoint_metric=uer`` tracks it. LF-MMI
outputs are pseudo log-likelihoods, so by default (``valid_decode=den_posterior``) the best path
is read from their frame occupation posteriors under the denominator graph (phone LM x CTC
topology), the decoder of :mod:`speechkd.eval.intelligibility`; ``valid_decode=greedy`` reads it
from the outputs themselves as fairseq's ``ctc`` criterion does. The other one is always logged
as well (``raw_uer``: outputs, ``den_uer``: posteriors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import kaldialign
import torch
from fairseq import utils
from fairseq.criterions import FairseqCriterion, register_criterion
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.logging import metrics
from fairseq.logging.meters import safe_round
from omegaconf import II, MISSING

from speechkd.errors import ConfigError, DataError
from speechkd.mmi import Fsa, LFMMILoss, ctc_graph, occupation_posteriors
from speechkd.mmi.lexicon import read_phone_table

VALID_DECODE = ChoiceEnum(["greedy", "den_posterior"])


@dataclass
class LFMMICriterionConfig(FairseqDataclass):
    den_graph: str = field(
        default=MISSING,
        metadata={"help": "denominator graph (den.fst.txt: OpenFst text over pdf + 1)"},
    )
    phones: str = field(
        default=MISSING, metadata={"help": "phones.txt: phone -> pdf id (<eps> 0 = CTC blank)"}
    )
    leaky_hmm_coefficient: float = field(
        default=1e-5, metadata={"help": "Kaldi's leaky-HMM coefficient of the denominator"}
    )
    den_scale: float = field(default=1.0, metadata={"help": "weight of the denominator score"})
    xent_regularize: float = field(
        default=0.0, metadata={"help": "cross-entropy regulariser (numerator posteriors)"}
    )
    output_l2_regularize: float = field(
        default=0.0, metadata={"help": "L2 regulariser of the pdf log-likelihoods"}
    )
    den_backend: str = field(
        default="auto", metadata={"help": "denominator backend: auto, prob, log or k2"}
    )
    valid_decode: VALID_DECODE = field(  # type: ignore[valid-type]
        default="den_posterior",
        metadata={
            "help": "validation best path from the outputs (greedy) or from their occupation "
            "posteriors under the denominator graph (den_posterior); gives c_errors / uer"
        },
    )
    sentence_avg: bool = II("optimization.sentence_avg")


def pdf_mapping(
    dictionary, phones: list[str], blank_symbol: str = "<s>"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pdf_columns [P], dict_to_pdf [len(dictionary)]) for a fairseq dictionary and a phone table.

    ``pdf_columns[p]`` is the dictionary index (model output column) of pdf ``p``: the blank
    symbol for pdf 0, phone ``phones[p - 1]`` for ``p >= 1``. ``dict_to_pdf[i]`` is the pdf of
    dictionary symbol ``i`` (-1 for the special symbols, which are never targets).
    """
    blank = dictionary.index(blank_symbol)
    if dictionary[blank] != blank_symbol:
        raise ConfigError(f"target dictionary has no blank symbol {blank_symbol!r}")
    specials = {
        dictionary.bos_word, dictionary.pad_word, dictionary.eos_word, dictionary.unk_word
    }  # fmt: skip
    phone_id = {p: i + 1 for i, p in enumerate(phones)}
    symbols = [dictionary[i] for i in range(len(dictionary))]
    extra = [
        s for s in symbols if s not in specials and not s.startswith("madeupword")
        and s not in phone_id
    ]  # fmt: skip
    if extra:
        raise ConfigError(
            f"target dictionary symbol(s) {extra[:10]} are not in phones.txt "
            f"({len(extra)} in all): the labels must be the phones of the denominator graph"
        )
    index = {s: i for i, s in enumerate(symbols)}
    missing = [p for p in phones if p not in index]
    if missing:
        raise ConfigError(
            f"phone(s) {missing[:10]} of phones.txt have no entry in the target dictionary "
            "(export it with the phone table: speechkd.bin.export_fairseq --phones phones.txt)"
        )
    columns = torch.tensor([blank] + [index[p] for p in phones], dtype=torch.long)
    dict_to_pdf = torch.full((len(dictionary),), -1, dtype=torch.long)
    dict_to_pdf[columns] = torch.arange(len(columns))
    return columns, dict_to_pdf


def greedy_pdfs(log_likes: torch.Tensor, length: int, blank: int = 0) -> list[int]:
    """Best-path CTC decoding of one utterance: argmax per frame, collapse repeats, drop blanks."""
    ids = log_likes[:length].argmax(-1).unique_consecutive()
    return ids[ids != blank].tolist()


@register_criterion("speechkd_lfmmi", dataclass=LFMMICriterionConfig)
class LFMMICriterion(FairseqCriterion):
    """LF-MMI on the CTC topology for ``wav2vec_ctc`` models (see the module docstring)."""

    def __init__(self, cfg: LFMMICriterionConfig, task) -> None:
        super().__init__(task)
        try:
            with open(cfg.den_graph, encoding="utf-8") as f:
                den = Fsa.from_openfst(f.read())
        except OSError as exc:
            raise ConfigError(f"criterion.den_graph={cfg.den_graph}: cannot read ({exc})") from None
        phones = read_phone_table(cfg.phones)
        dictionary = task.target_dictionary
        if dictionary is None:
            raise ConfigError("criterion speechkd_lfmmi needs labels (task.labels=phn)")
        blank_symbol = getattr(task, "blank_symbol", dictionary.bos_word)
        columns, dict_to_pdf = pdf_mapping(dictionary, phones, blank_symbol)
        num_pdfs = len(columns)
        if den.max_label >= num_pdfs:
            raise ConfigError(
                f"criterion.den_graph={cfg.den_graph}: pdf {den.max_label} but {cfg.phones} "
                f"has only {num_pdfs} pdfs (blank + {len(phones)} phones)"
            )
        self.register_buffer("pdf_columns", columns, persistent=False)
        self.register_buffer("dict_to_pdf", dict_to_pdf, persistent=False)
        self.mmi = LFMMILoss(
            den,
            den_scale=cfg.den_scale,
            leaky_hmm_coefficient=cfg.leaky_hmm_coefficient,
            xent_regularize=cfg.xent_regularize,
            output_l2_regularize=cfg.output_l2_regularize,
            den_backend=cfg.den_backend,
            reduction="sum",
        )
        self.sentence_avg = cfg.sentence_avg
        self.valid_decode = str(cfg.valid_decode)
        self.pad_idx = dictionary.pad()
        self.eos_idx = dictionary.eos()

    def pdf_log_likes(self, model, net_output) -> tuple[torch.Tensor, torch.Tensor]:
        """(log_likes [B, T, P] in pdf order, lengths [B]) of a ``wav2vec_ctc`` output."""
        logits = model.get_logits(net_output).float()  # T, B, V
        logits = logits.index_select(-1, self.pdf_columns.to(logits.device)).transpose(0, 1)
        B, T, _ = logits.shape
        padding_mask = net_output.get("padding_mask")
        if padding_mask is not None:
            lengths = (~padding_mask[:, -T:]).long().sum(-1)
        else:
            lengths = torch.full((B,), T, dtype=torch.long, device=logits.device)
        valid = torch.arange(T, device=logits.device)[None, :] < lengths[:, None]
        # padded frames hold -inf (wav2vec_ctc masks them); they are never scored
        logits = logits.masked_fill(~valid[..., None], 0.0)
        return logits.log_softmax(-1), lengths

    def pdf_targets(self, sample) -> list[torch.Tensor]:
        """The target pdf sequences of a batch (pad and eos removed)."""
        targets = []
        dict_to_pdf = self.dict_to_pdf.to(sample["target"].device)
        for i, row in enumerate(sample["target"]):
            row = row[(row != self.pad_idx) & (row != self.eos_idx)]
            pdfs = dict_to_pdf[row]
            if (pdfs < 0).any():
                bad = self.task.target_dictionary[int(row[pdfs < 0][0])]
                raise DataError(
                    f"utterance {int(sample['id'][i])}: target symbol {bad!r} is not a phone "
                    "(<unk>: a label missing from dict.phn.txt)"
                )
            targets.append(pdfs)
        return targets

    def forward(self, model, sample, reduce: bool = True):
        net_output = model(**sample["net_input"])
        log_likes, lengths = self.pdf_log_likes(model, net_output)
        targets = self.pdf_targets(sample)
        out = self.mmi(log_likes, lengths, [ctc_graph(t.cpu()) for t in targets])
        loss = out.loss

        target_lengths = torch.tensor([len(t) for t in targets])
        ntokens = sample["ntokens"] if "ntokens" in sample else int(target_lengths.sum())
        nsentences = sample["id"].numel()
        sample_size = nsentences if self.sentence_avg else ntokens
        ok = torch.isfinite(out.num) & torch.isfinite(out.den)
        logging_output = {
            "loss": utils.item(loss.data),
            "ntokens": ntokens,
            "nsentences": nsentences,
            "sample_size": sample_size,
            "mmi_num": float(out.num[ok].sum()),
            "mmi_den": float(out.den[ok].sum()),
            "mmi_objf": float((out.num[ok] - self.mmi.den_scale * out.den[ok]).sum()),
            "mmi_frames": out.num_frames,
            "mmi_failed": out.num_failed,
        }
        if not model.training:
            logging_output.update(self.validation_errors(log_likes.detach(), lengths, targets))
        return loss, sample_size, logging_output

    def validation_errors(
        self, log_likes: torch.Tensor, lengths: torch.Tensor, targets: list[torch.Tensor]
    ) -> dict[str, int]:
        """Phone errors of the best paths of the outputs and of the den-graph posteriors."""
        _, posteriors = occupation_posteriors(
            self.mmi.den_graph, log_likes, lengths, self.mmi.den_backend,
            self.mmi.leaky_hmm_coefficient,
        )  # fmt: skip
        errors = {"raw": 0, "den": 0}
        c_total = 0
        for b, target in enumerate(targets):
            ref, length = target.tolist(), int(lengths[b])
            for name, frames in (("raw", log_likes[b]), ("den", posteriors[b])):
                hyp = greedy_pdfs(frames, length)
                errors[name] += kaldialign.edit_distance(ref, hyp)["total"] if ref or hyp else 0
            c_total += len(ref)
        main = "den" if self.valid_decode == "den_posterior" else "raw"
        return {
            "c_errors": errors[main],
            "c_total": c_total,
            "raw_c_errors": errors["raw"],
            "den_c_errors": errors["den"],
        }

    @staticmethod
    def reduce_metrics(logging_outputs) -> None:
        def total(key: str) -> float:
            return utils.item(sum(log.get(key, 0) for log in logging_outputs))

        loss_sum, sample_size, ntokens = total("loss"), total("sample_size"), total("ntokens")
        metrics.log_scalar(
            "loss", loss_sum / max(sample_size, 1) / math.log(2), sample_size, round=3
        )
        metrics.log_scalar("ntokens", ntokens)
        metrics.log_scalar("nsentences", total("nsentences"))
        if sample_size != ntokens:
            metrics.log_scalar(
                "nll_loss", loss_sum / max(ntokens, 1) / math.log(2), ntokens, round=3
            )
        frames = total("mmi_frames")
        if frames > 0:
            num, den = total("mmi_num"), total("mmi_den")
            metrics.log_scalar("mmi_num", num / frames, frames, round=4)
            metrics.log_scalar("mmi_den", den / frames, frames, round=4)
            metrics.log_scalar("mmi_objf", total("mmi_objf") / frames, frames, round=4)
        metrics.log_scalar_sum("mmi_failed", total("mmi_failed"))
        c_total = total("c_total")
        metrics.log_scalar("_c_total", c_total)
        for key in ("c_errors", "raw_c_errors", "den_c_errors"):
            metrics.log_scalar(f"_{key}", total(key))
        if c_total > 0:
            for name, key in (
                ("uer", "c_errors"), ("per", "c_errors"), ("raw_uer", "raw_c_errors"),
                ("den_uer", "den_c_errors"),
            ):  # fmt: skip
                metrics.log_derived(name, _error_rate(f"_{key}"))

    @staticmethod
    def logging_outputs_can_be_summed() -> bool:
        return True


def _error_rate(key: str):
    """A derived metric: 100 * meters[key] / meters['_c_total'] (NaN without tokens)."""

    def rate(meters) -> float:
        total = meters["_c_total"].sum
        return safe_round(meters[key].sum * 100.0 / total, 3) if total > 0 else float("nan")

    return rate
