"""Export lhotse speech-translation CutSets to fairseq's raw-audio speech_to_text format.

The output directory is what ``fairseq-train <dir> --task speech_text_joint_to_text
--config-yaml config_st.yaml`` (examples/speech_text_joint_to_text, dual-input xm transformer with
wav2vec 2.0 + mBART) reads::

    <split>.tsv        id audio n_frames tgt_text src_text speaker src_lang tgt_lang
    audio/<split>.zip  uncompressed zip of 16-bit FLAC clips (only cuts that are not whole files)
    spm.model          sentencepiece model (unigram by default) shared by source and target
    dict.txt           fairseq dictionary: spm pieces, <lang:xx> tags in mBART order, <mask>
    config_st.yaml     S2TJointDataConfig: vocab, sentencepiece, use_audio_input, lang tags
    export.json        options, languages and per-split counts (kept, dropped, zipped)
    mbart_text/        (with denoising text) spm-encoded text per mBART language for
                       fairseq-preprocess + the multilingual_denoising task, and its dict.txt

``audio`` is either an audio file (a cut covering a whole mono 16 kHz wav/flac/ogg file) or
``<zip>:<byte offset>:<byte length>`` of one FLAC clip inside a stored zip, the two forms that
fairseq's ``get_features_or_waveform`` reads; ``n_frames`` counts samples (raw audio input).

The dictionary lines up with a model pretrained by fairseq's ``multilingual_denoising`` task on
``mbart_text/``: that task appends ``[<code>]`` for each of ``--langs`` and then ``<mask>`` to the
pieces of ``mbart_text/dict.txt``; ``dict.txt`` writes the same rows with the tag fairseq's ST
datasets look up (``<lang:de>`` at the index of ``[de_DE]``), so ``--load-pretrained-mbart-from``
finds every embedding row where it expects it and ``prepend_tgt_lang_tag_no_change`` starts the
decoder with the pretrained language token, as mBART fine-tuning does.

Filters follow the joint speech/text KD setup: training clips shorter than 50 ms or longer than
30 s are dropped and counted; without a dev split, 1% of the training cuts (chosen by a hash of
the cut id, so a cut's side never depends on the others) is held out as ``dev``. Evaluation
splits are exported whole by default; their out-of-range clips are counted and logged.

Every clip is mono at ``sample_rate`` (resampled into the zip where needed), so fairseq's
``convert_waveform`` has nothing to convert; fairseq 0.12 still imports torchaudio's sox effects
there, so a torchaudio-free environment must bypass that call when reading these clips.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from lhotse import CutSet
from lhotse.cut import Cut

from speechkd.data.manifest_io import open_cuts_lazy
from speechkd.data.prepare.languages import to_iso639_1
from speechkd.data.textio import read_utf8_lines
from speechkd.data.units import train_sentencepiece_bytes
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_directory

logger = logging.getLogger(__name__)

TSV_COLUMNS = ("id", "audio", "n_frames", "tgt_text", "src_text", "speaker", "src_lang", "tgt_lang")
# fairseq's SpeechToTextDataset.LANG_TAG_TEMPLATE (also speech_text_joint's LANG_TAG_TEMPLATE)
LANG_TAG = "<lang:{}>"
MASK_SYMBOL = "<mask>"
CONFIG_NAME = "config_st.yaml"
DICT_NAME = "dict.txt"
SPM_NAME = "spm.model"
MBART_TEXT_DIR = "mbart_text"
AUDIO_FILE_SUFFIXES = (".wav", ".flac", ".ogg")  # fairseq's SF_AUDIO_FILE_EXTENSIONS
# fairseq.data.Dictionary's own specials; spm pieces with these names are not written again
FAIRSEQ_SPECIALS = ("<s>", "<pad>", "</s>", "<unk>")
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed entry time: the same clips give the same zip bytes

# mBART-50 language codes (mBART-25 is a subset, same spelling); other languages get "<iso>_XX".
MBART_CODES = {
    code.split("_")[0]: code
    for code in (
        "ar_AR cs_CZ de_DE en_XX es_XX et_EE fi_FI fr_XX gu_IN hi_IN it_IT ja_XX kk_KZ ko_KR "
        "lt_LT lv_LV my_MM ne_NP nl_XX ro_RO ru_RU si_LK tr_TR vi_VN zh_CN af_ZA az_AZ bn_IN "
        "fa_IR he_IL hr_HR id_ID ka_GE km_KH mk_MK ml_IN mn_MN mr_IN pl_PL ps_AF pt_XX sv_SE "
        "sw_KE ta_IN te_IN th_TH tl_XX uk_UA ur_PK xh_ZA gl_ES sl_SI"
    ).split()
}


@dataclass(frozen=True)
class ExportOptions:
    """Export settings (defaults: the paper's filters, a joint 8k unigram vocabulary)."""

    train_split: str = "train"
    heldout_split: str = "dev"
    heldout_fraction: float = 0.01
    min_duration: float = 0.05
    max_duration: float = 30.0
    filter_eval: bool = False
    sample_rate: int = 16000
    audio_mode: str = "auto"  # auto: whole files by path, other cuts zipped | zip: all zipped
    spm_vocab_size: int = 8000
    spm_model_type: str = "unigram"
    standardize_audio: bool = True  # wav2vec2-large / XLS-R / the tiny teacher: normalize
    default_tgt_lang: str | None = None

    def check(self) -> None:
        if self.audio_mode not in ("auto", "zip"):
            raise ConfigError(f"audio_mode={self.audio_mode!r}: expected auto or zip")
        if not 0.0 <= self.heldout_fraction < 1.0:
            raise ConfigError(f"heldout_fraction={self.heldout_fraction!r}: must be in [0, 1)")
        if not 0.0 <= self.min_duration < self.max_duration:
            raise ConfigError(
                f"min_duration={self.min_duration!r}, max_duration={self.max_duration!r}: "
                "need 0 <= min < max"
            )
        if self.sample_rate <= 0:
            raise ConfigError(f"sample_rate={self.sample_rate!r}: must be positive")
        if self.train_split == self.heldout_split:
            raise ConfigError(f"heldout_split={self.heldout_split!r}: same as train_split")


@dataclass
class SplitStats:
    """What happened to one split's cuts (logged and saved in export.json)."""

    split: str
    cuts_in: int = 0
    written: int = 0
    dropped_short: int = 0
    dropped_long: int = 0
    kept_out_of_range: int = 0
    heldout: int = 0
    zipped: int = 0
    hours: float = 0.0


@dataclass
class ExportResult:
    """Paths and counts of one export."""

    out_dir: Path
    config: Path
    dictionary: Path
    spm_model: Path
    tsv: dict[str, Path]
    stats: dict[str, SplitStats]
    langs: list[str]
    mbart_langs: list[str]
    mbart_text: Path | None = None
    summary: dict = field(default_factory=dict)


def mbart_code(lang: str) -> str:
    """mBART's code of a language (``de`` -> ``de_DE``); unknown ones get ``<iso>_XX``."""
    iso = to_iso639_1(lang)
    return MBART_CODES.get(iso, f"{iso}_XX")


def lang_tag(lang: str) -> str:
    """fairseq's speech-to-text language tag (``<lang:de>``)."""
    return LANG_TAG.format(lang)


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) from a string (sha1, independent of Python's hash seed)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") / 2.0**64


def heldout_keys(keys: Iterable[str], fraction: float) -> set[str]:
    """Keys whose hash falls below ``fraction``; at least the lowest one when ``fraction > 0``
    and there are two keys or more (a tiny set still gets a dev cut)."""
    keys = list(keys)
    if fraction <= 0 or len(keys) < 2:
        return set()
    chosen = {k for k in keys if hash_fraction(k) < fraction}
    if not chosen:
        chosen = {min(keys, key=hash_fraction)}
    return chosen


def read_st_tsv(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a fairseq speech-to-text tsv, read as fairseq reads them (no quoting)."""
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(
            f,
            delimiter="\t",
            quotechar=None,
            doublequote=False,
            lineterminator="\n",
            quoting=csv.QUOTE_NONE,
        )
        return [dict(row) for row in reader]


def _field(value: str, what: str, cut_id: str) -> str:
    """A tsv field: stripped, non-empty, without tab/newline (fairseq does no quoting)."""
    value = value.strip()
    if not value:
        raise DataError(f"cut {cut_id!r}: empty {what}")
    if any(ch in value for ch in "\t\n\r"):
        raise DataError(f"cut {cut_id!r}: {what} contains a tab or line break: {value!r}")
    return value


def st_fields(cut: Cut, default_tgt_lang: str | None = None) -> dict[str, str]:
    """The text columns of one cut (src_text, tgt_text, speaker, src_lang, tgt_lang).

    The cut needs exactly one supervision spanning it, with ``text`` (the transcript),
    ``language`` and ``custom["translation"]``; ``custom["tgt_lang"]`` may be replaced by
    ``default_tgt_lang``. Anything missing is a DataError naming the cut.
    """
    if len(cut.supervisions) != 1:
        raise DataError(
            f"cut {cut.id!r}: expected one supervision, found {len(cut.supervisions)} "
            "(trim the cuts to their supervisions first)"
        )
    sup = cut.supervisions[0]
    tolerance = 0.01
    if abs(sup.start) > tolerance or abs(sup.duration - cut.duration) > tolerance:
        raise DataError(
            f"cut {cut.id!r}: supervision {sup.id!r} ({sup.start:.3f} s + {sup.duration:.3f} s) "
            f"does not span the cut ({cut.duration:.3f} s); trim the cuts to their supervisions"
        )
    custom = sup.custom or {}
    translation = custom.get("translation")
    if translation is None:
        raise DataError(f"cut {cut.id!r}: supervision has no custom['translation']")
    tgt_lang = custom.get("tgt_lang") or default_tgt_lang
    if not tgt_lang:
        raise DataError(f"cut {cut.id!r}: supervision has no custom['tgt_lang'] (or give one)")
    if not sup.language:
        raise DataError(f"cut {cut.id!r}: supervision has no language (the source language)")
    if sup.text is None:
        raise DataError(f"cut {cut.id!r}: supervision has no text (the transcript)")
    speaker = sup.speaker or ""
    if any(ch in speaker for ch in "\t\n\r"):
        raise DataError(f"cut {cut.id!r}: speaker contains a tab or line break: {speaker!r}")
    return {
        "tgt_text": _field(str(translation), "translation", cut.id),
        "src_text": _field(sup.text, "transcript", cut.id),
        "speaker": speaker,
        "src_lang": to_iso639_1(sup.language),
        "tgt_lang": to_iso639_1(str(tgt_lang)),
    }


def direct_audio(cut: Cut, sample_rate: int) -> tuple[str, int] | None:
    """``(absolute path, samples)`` if the cut is a whole mono file fairseq can read directly.

    A whole file is: one file source in wav/flac/ogg at ``sample_rate``, one channel, no
    transforms, the cut starting at 0 and as long as the recording. Relative sources are taken
    relative to the working directory (as lhotse does). A header disagreeing with the manifest is
    a DataError naming the file.
    """
    rec = getattr(cut, "recording", None)
    if rec is None or not getattr(cut, "has_recording", False) or len(rec.sources) != 1:
        return None
    source = rec.sources[0]
    if source.type != "file" or Path(source.source).suffix.lower() not in AUDIO_FILE_SUFFIXES:
        return None
    if rec.transforms or rec.sampling_rate != sample_rate or rec.num_channels != 1:
        return None
    if cut.start != 0 or cut.num_samples != rec.num_samples:
        return None
    path = Path(source.source).resolve()
    if any(ch in str(path) for ch in "\t\n\r"):
        raise DataError(f"cut {cut.id!r}: audio path contains a tab or line break: {path}")
    if not path.is_file():
        raise DataError(f"{path}: audio file not found (cut {cut.id!r})")
    info = sf.info(str(path))
    if info.samplerate != sample_rate or info.channels != 1 or info.frames != rec.num_samples:
        raise DataError(
            f"{path}: header says {info.frames} samples, {info.samplerate} Hz, {info.channels} "
            f"channel(s); the manifest of cut {cut.id!r} says {rec.num_samples} samples, "
            f"{rec.sampling_rate} Hz, {rec.num_channels} channel(s)"
        )
    return str(path), int(info.frames)


def clip_flac(cut: Cut, sample_rate: int) -> tuple[bytes, int]:
    """The cut's audio at ``sample_rate`` as 16-bit mono FLAC bytes, and its sample count."""
    if cut.sampling_rate != sample_rate:
        cut = cut.resample(sample_rate)
    try:
        audio = cut.load_audio()
    except Exception as err:  # lhotse raises backend-specific errors
        raise DataError(f"cut {cut.id!r}: cannot load audio ({type(err).__name__}: {err})") from err
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 2:
        if audio.shape[0] != 1:
            raise DataError(f"cut {cut.id!r}: {audio.shape[0]} channels; expected mono")
        audio = audio[0]
    buffer = io.BytesIO()
    sf.write(
        buffer, np.clip(audio, -1.0, 32767 / 32768), sample_rate, format="FLAC", subtype="PCM_16"
    )
    return buffer.getvalue(), int(audio.shape[0])


def stored_zip_offsets(zip_path: Path) -> dict[str, tuple[int, int]]:
    """``{entry name: (byte offset of its data, byte length)}`` of an uncompressed zip."""
    offsets = {}
    with zipfile.ZipFile(zip_path) as zf, open(zip_path, "rb") as fh:
        for info in zf.infolist():
            if info.compress_type != zipfile.ZIP_STORED:
                raise DataError(f"{zip_path}: entry {info.filename!r} is compressed")
            fh.seek(info.header_offset)
            header = fh.read(30)
            name_len, extra_len = struct.unpack("<HH", header[26:30])
            offsets[info.filename] = (
                info.header_offset + 30 + name_len + extra_len,
                info.file_size,
            )
    return offsets


def load_cuts(sources: Sequence[str | os.PathLike | CutSet]) -> list[Cut]:
    """The cuts of several manifests (or CutSets), sorted by id; a repeated id is a DataError."""
    cuts: dict[str, Cut] = {}
    for source in sources:
        if isinstance(source, CutSet):
            cutset, where = source, "given CutSet"
        else:
            path = Path(source)
            if not path.is_file():
                raise DataError(f"{path}: cut manifest not found")
            cutset, where = open_cuts_lazy(path), str(path)
        for cut in cutset:
            if cut.id in cuts:
                raise DataError(f"{where}: cut id {cut.id!r} appears twice in the same split")
            cuts[cut.id] = cut
    return [cuts[k] for k in sorted(cuts)]


def _in_range(cut: Cut, options: ExportOptions) -> str | None:
    """``"short"``, ``"long"`` or None for a cut's duration against the filters."""
    if cut.duration < options.min_duration:
        return "short"
    if cut.duration > options.max_duration:
        return "long"
    return None


def _select(cuts: list[Cut], stats: SplitStats, options: ExportOptions, apply: bool) -> list[Cut]:
    kept = []
    for cut in cuts:
        reason = _in_range(cut, options)
        if reason is None:
            kept.append(cut)
        elif not apply:
            stats.kept_out_of_range += 1
            kept.append(cut)
        elif reason == "short":
            stats.dropped_short += 1
        else:
            stats.dropped_long += 1
    return kept


def _export_audio(
    cuts: list[Cut],
    split: str,
    tmp_dir: Path,
    final_dir: Path,
    options: ExportOptions,
    stats: SplitStats,
) -> dict[str, tuple[str, int]]:
    """``{cut id: (audio field, n_frames)}``; clips that are not whole files go into a zip."""
    audio: dict[str, tuple[str, int]] = {}
    to_zip = []
    for cut in cuts:
        direct = direct_audio(cut, options.sample_rate) if options.audio_mode == "auto" else None
        if direct is None:
            to_zip.append(cut)
        else:
            audio[cut.id] = direct
    if not to_zip:
        return audio
    final_zip = (final_dir / "audio" / f"{split}.zip").resolve()
    if ":" in str(final_zip):
        raise ConfigError(f"{final_zip}: fairseq cannot address a zip whose path has a ':'")
    tmp_zip = tmp_dir / "audio" / f"{split}.zip"
    tmp_zip.parent.mkdir(parents=True, exist_ok=True)
    frames: dict[str, int] = {}
    with zipfile.ZipFile(tmp_zip, "w", compression=zipfile.ZIP_STORED) as zf:
        for cut in to_zip:
            data, n = clip_flac(cut, options.sample_rate)
            info = zipfile.ZipInfo(f"{cut.id}.flac", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
            frames[cut.id] = n
    for name, (offset, length) in stored_zip_offsets(tmp_zip).items():
        cut_id = name[: -len(".flac")]
        audio[cut_id] = (f"{final_zip}:{offset}:{length}", frames[cut_id])
    stats.zipped = len(to_zip)
    return audio


def _write_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    lines = ["\t".join(TSV_COLUMNS)]
    lines += ["\t".join(str(row[c]) for c in TSV_COLUMNS) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _dict_text(symbols: Sequence[str]) -> str:
    return "".join(f"{s} 1\n" for s in symbols)


def read_dict_symbols(path: str | os.PathLike) -> list[str]:
    """The symbols of a fairseq dict.txt (``symbol count [#fairseq:overwrite]`` per line)."""
    symbols = []
    for number, line in enumerate(read_utf8_lines(path), start=1):
        try:
            symbol, count = line.rstrip().rsplit(" ", 1)
            if count == "#fairseq:overwrite":
                symbol, count = symbol.rsplit(" ", 1)
            int(count)
        except ValueError:
            raise DataError(f"{path}:{number}: expected 'symbol count', got {line!r}") from None
        symbols.append(symbol)
    return symbols


def spm_pieces(model_bytes: bytes) -> list[str]:
    """The pieces of a sentencepiece model other than its control/unknown symbols."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    return [
        sp.id_to_piece(i)
        for i in range(sp.get_piece_size())
        if not (sp.is_control(i) or sp.is_unknown(i)) and sp.id_to_piece(i) not in FAIRSEQ_SPECIALS
    ]


def st_dictionary_symbols(pieces: Sequence[str], mbart_langs: Sequence[str]) -> list[str]:
    """dict.txt symbols: the pieces, ``<lang:xx>`` per mBART code in order, then ``<mask>``.

    These are the rows of fairseq's multilingual_denoising dictionary (pieces, ``[code]`` per
    ``--langs``, ``<mask>``) with the language tokens renamed to the ST tags.
    """
    isos = [code.split("_")[0] for code in mbart_langs]
    if len(set(isos)) != len(isos):
        raise ConfigError(f"mbart_langs={list(mbart_langs)}: two codes share a language")
    clash = {lang_tag(i) for i in isos} & set(pieces) | ({MASK_SYMBOL} & set(pieces))
    if clash:
        raise DataError(f"dictionary pieces already contain {sorted(clash)}")
    return [*pieces, *(lang_tag(i) for i in isos), MASK_SYMBOL]


def _encode_lines(sp, lines: Sequence[str]) -> str:
    return "".join(" ".join(pieces) + "\n" for pieces in sp.encode(list(lines), out_type=str))


def _read_text_files(paths: Sequence[str | os.PathLike]) -> list[str]:
    lines = []
    for path in paths:
        lines += [line.strip() for line in read_utf8_lines(path) if line.strip()]
    return lines


def export_fairseq_st(
    cuts: Mapping[str, Sequence[str | os.PathLike | CutSet]],
    out_dir: str | os.PathLike,
    options: ExportOptions | None = None,
    text: Mapping[str, Sequence[str | os.PathLike]] | None = None,
    denoising_text: bool = False,
    spm_model: str | os.PathLike | None = None,
    spm_dict: str | os.PathLike | None = None,
    mbart_langs: Sequence[str] | None = None,
) -> ExportResult:
    """Export ST cuts to ``out_dir`` (replaced atomically as a whole; an existing non-empty
    directory must be an earlier export).

    ``cuts`` maps a split name to its manifests (several are concatenated: MuST-C + CoVoST 2 +
    Europarl-ST train). ``text`` maps a language to extra monolingual text files used, with the
    training transcripts and translations, for the sentencepiece model and (``denoising_text``)
    the mBART denoising data. ``spm_model``/``spm_dict`` reuse an existing model and fairseq
    dictionary (a downloaded mBART's ``sentence.bpe.model`` and ``dict.txt``) instead of training
    one; ``mbart_langs`` is then that model's ``--langs`` list, in order. Returns the paths and the
    per-split counts.
    """
    options = options or ExportOptions()
    options.check()
    if not cuts:
        raise ConfigError("cuts: no split given")
    if (spm_model is None) != (spm_dict is None):
        raise ConfigError("spm_model and spm_dict: give both (an existing model) or neither")
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        if not (out_dir / "export.json").is_file():
            raise ConfigError(
                f"{out_dir}: exists and is not an earlier export (no export.json); the export "
                "replaces its output directory as a whole, so give a new or exported directory"
            )

    # texts and filters first: every DataError comes before any audio is written
    stats: dict[str, SplitStats] = {}
    selected: dict[str, list[Cut]] = {}
    for split, sources in cuts.items():
        split_cuts = load_cuts(sources)
        stats[split] = SplitStats(split, cuts_in=len(split_cuts))
        apply = options.filter_eval or split == options.train_split
        selected[split] = _select(split_cuts, stats[split], options, apply)
    fields = {
        split: {cut.id: st_fields(cut, options.default_tgt_lang) for cut in split_cuts}
        for split, split_cuts in selected.items()
    }
    if (
        options.train_split in selected
        and options.heldout_split not in selected
        and options.heldout_fraction > 0
    ):
        train = selected[options.train_split]
        held = heldout_keys((c.id for c in train), options.heldout_fraction)
        selected[options.heldout_split] = [c for c in train if c.id in held]
        selected[options.train_split] = [c for c in train if c.id not in held]
        train_fields = fields[options.train_split]
        fields[options.heldout_split] = {k: train_fields.pop(k) for k in sorted(held)}
        stats[options.heldout_split] = SplitStats(options.heldout_split, cuts_in=len(held))
        stats[options.train_split].heldout = len(held)
    for split, split_cuts in selected.items():
        if not split_cuts:
            raise DataError(f"split {split!r}: no cuts left to export (see the filter counts)")

    langs = sorted(
        {row[k] for fs in fields.values() for row in fs.values() for k in ("src_lang", "tgt_lang")}
    )
    if mbart_langs is None:
        mbart_langs = [mbart_code(lang) for lang in langs]
    mbart_langs = list(mbart_langs)
    missing = sorted(set(langs) - {code.split("_")[0] for code in mbart_langs})
    if missing:
        raise ConfigError(f"mbart_langs={mbart_langs}: no code for language(s) {missing}")

    # training text of each language: training transcripts/translations + extra text
    if spm_model is None and options.train_split not in fields:
        raise ConfigError(
            f"cuts: no {options.train_split!r} split to train sentencepiece on (or give spm_model)"
        )
    lang_text: dict[str, list[str]] = {}
    for cut_id in sorted(fields.get(options.train_split, {})):
        row = fields[options.train_split][cut_id]
        lang_text.setdefault(row["src_lang"], []).append(row["src_text"])
        lang_text.setdefault(row["tgt_lang"], []).append(row["tgt_text"])
    for lang, paths in (text or {}).items():
        lang_text.setdefault(to_iso639_1(lang), []).extend(_read_text_files(paths))
    unknown = sorted(set(lang_text) - {code.split("_")[0] for code in mbart_langs})
    if denoising_text and unknown:
        raise ConfigError(f"text: language(s) {unknown} are not in mbart_langs={mbart_langs}")

    import sentencepiece as spm

    if spm_model is None:
        all_text = [line for lang in sorted(lang_text) for line in lang_text[lang]]
        model_bytes = train_sentencepiece_bytes(
            all_text, vocab_size=options.spm_vocab_size, model_type=options.spm_model_type
        )
        pieces = spm_pieces(model_bytes)
    else:
        model_bytes = Path(spm_model).read_bytes()
        pieces = read_dict_symbols(spm_dict)
    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    symbols = st_dictionary_symbols(pieces, mbart_langs)

    with atomic_directory(out_dir) as tmp:
        (tmp / SPM_NAME).write_bytes(model_bytes)
        (tmp / DICT_NAME).write_text(_dict_text(symbols), encoding="utf-8")
        tsv_paths = {}
        for split, split_cuts in selected.items():
            st = stats[split]
            audio = _export_audio(split_cuts, split, tmp, out_dir, options, st)
            rows = []
            for cut in split_cuts:
                path, n_frames = audio[cut.id]
                rows.append(
                    {"id": cut.id, "audio": path, "n_frames": n_frames, **fields[split][cut.id]}
                )
            _write_tsv(tmp / f"{split}.tsv", rows)
            tsv_paths[split] = out_dir / f"{split}.tsv"
            st.written = len(rows)
            st.hours = round(sum(int(r["n_frames"]) for r in rows) / options.sample_rate / 3600, 4)
        config = st_config(out_dir, options)
        (tmp / CONFIG_NAME).write_text(yaml.safe_dump(config, sort_keys=True), encoding="utf-8")
        mbart_dir = None
        if denoising_text:
            mbart_dir = out_dir / MBART_TEXT_DIR
            _write_denoising_text(
                tmp / MBART_TEXT_DIR, sp, pieces, lang_text, mbart_langs, options.heldout_fraction
            )
        summary = {
            "options": asdict(options),
            "inputs": {
                s: [str(p) if not isinstance(p, CutSet) else "<CutSet>" for p in src]
                for s, src in cuts.items()
            },
            "text": {lang: [str(p) for p in paths] for lang, paths in (text or {}).items()},
            "langs": langs,
            "mbart_langs": mbart_langs,
            "dictionary_size": len(symbols) + len(FAIRSEQ_SPECIALS),
            "spm_pieces": sp.get_piece_size(),
            "splits": {s: asdict(st) for s, st in stats.items()},
        }
        (tmp / "export.json").write_text(
            json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
    for st in stats.values():
        _log_stats(st, options)
    return ExportResult(
        out_dir=out_dir,
        config=out_dir / CONFIG_NAME,
        dictionary=out_dir / DICT_NAME,
        spm_model=out_dir / SPM_NAME,
        tsv=tsv_paths,
        stats=stats,
        langs=langs,
        mbart_langs=mbart_langs,
        mbart_text=mbart_dir,
        summary=summary,
    )


def st_config(out_dir: Path, options: ExportOptions) -> dict:
    """The S2TJointDataConfig yaml content (absolute sentencepiece paths: fairseq resolves the
    source-side tokenizer path as given, not against the data directory).

    ``standardize_audio`` (zero mean, unit variance per clip) must match the wav2vec2 model's
    pre-training ``normalize``. fairseq 0.12's SpeechToTextDataset tests the bound method
    ``cfg.standardize_audio`` instead of calling it, so it standardises raw audio either way;
    the key still records the intent for fixed versions.
    """
    spm_path = str(out_dir / SPM_NAME)
    return {
        "vocab_filename": DICT_NAME,
        "src_vocab_filename": DICT_NAME,
        "bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": spm_path},
        "src_bpe_tokenizer": {"bpe": "sentencepiece", "sentencepiece_model": spm_path},
        "use_audio_input": True,
        "use_sample_rate": options.sample_rate,
        "standardize_audio": options.standardize_audio,
        "prepend_tgt_lang_tag_no_change": True,
        "audio_root": "",
    }


def _write_denoising_text(
    out: Path,
    sp,
    pieces: Sequence[str],
    lang_text: Mapping[str, list[str]],
    mbart_langs: Sequence[str],
    fraction: float,
) -> None:
    """``<code>/{train,valid}.spm`` per language with text, ``dict.txt`` (pieces only) and
    ``langs.txt`` (the ``--langs`` value). Valid lines: hash-selected, duplicates together."""
    out.mkdir(parents=True)
    (out / DICT_NAME).write_text(_dict_text(pieces), encoding="utf-8")
    (out / "langs.txt").write_text(",".join(mbart_langs) + "\n", encoding="utf-8")
    for code in mbart_langs:
        lines = lang_text.get(code.split("_")[0], [])
        if not lines:
            raise DataError(f"denoising text: no text for language {code}")
        held = heldout_keys(sorted(set(lines)), max(fraction, 1e-9))
        train = [line for line in lines if line not in held]
        valid = [line for line in lines if line in held]
        if not train:
            raise DataError(f"denoising text {code}: too little text to hold out a valid part")
        (out / code).mkdir()
        (out / code / "train.spm").write_text(_encode_lines(sp, train), encoding="utf-8")
        (out / code / "valid.spm").write_text(_encode_lines(sp, valid), encoding="utf-8")
        logger.info("denoising text %s: %d train, %d valid lines", code, len(train), len(valid))


def _log_stats(st: SplitStats, options: ExportOptions) -> None:
    logger.info(
        "%s: %d cuts in, %d written (%.2f h, %d zipped), %d dropped < %.3f s, %d dropped > %.1f s, "
        "%d held out",
        st.split,
        st.cuts_in,
        st.written,
        st.hours,
        st.zipped,
        st.dropped_short,
        options.min_duration,
        st.dropped_long,
        options.max_duration,
        st.heldout,
    )
    if st.kept_out_of_range:
        logger.warning(
            "%s: kept %d cut(s) outside [%.3f, %.1f] s (evaluation split, not filtered)",
            st.split,
            st.kept_out_of_range,
            options.min_duration,
            options.max_duration,
        )


__all__ = [
    "CONFIG_NAME",
    "ExportOptions",
    "ExportResult",
    "LANG_TAG",
    "SplitStats",
    "TSV_COLUMNS",
    "clip_flac",
    "direct_audio",
    "export_fairseq_st",
    "hash_fraction",
    "heldout_keys",
    "lang_tag",
    "load_cuts",
    "mbart_code",
    "read_dict_symbols",
    "read_st_tsv",
    "spm_pieces",
    "st_config",
    "st_dictionary_symbols",
    "st_fields",
    "stored_zip_offsets",
]
