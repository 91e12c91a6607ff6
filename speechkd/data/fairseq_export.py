"""lhotse CutSets → fairseq audio manifests and label files (wav2vec 2.0 pre-training/fine-tuning).

For a split ``S`` the output directory gets (the layout of fairseq's ``wav2vec_manifest.py`` and
``libri_labels.py``):

* ``S.tsv``: the audio root directory on the first line, then ``relative/path.wav<TAB>samples``;
* ``S.wrd``: the words of each utterance (lower-cased, leading/trailing punctuation removed: the
  normalisation of :func:`speechkd.mmi.text_to_phones.split_words`, which built the lexicon);
* ``S.ltr``: its letters separated by spaces, ``|`` after every word (``h e l l o | w o r l d |``);
* ``S.phn``: its phones from a lexicon (the first pronunciation of each word), space-separated;
* ``dict.ltr.txt`` / ``dict.phn.txt``: fairseq ``Dictionary`` files (``symbol count``, most
  frequent first, ties by symbol). Given a phone table (``phones.txt``), ``dict.phn.txt`` lists
  every phone of the table in table order (unseen ones with count 0), so that a model's outputs
  are the pdfs of a denominator graph built on that table (phone ``p`` -> column ``p + 3``).

Utterances are written in cut-id order. A cut whose audio is a whole single-channel 16 kHz file
(one ``file`` source, soundfile-readable, cut = whole recording, no lhotse transforms) is listed
with its own path; any other cut (a segment, another rate, several channels, URLs/memory
sources) is rendered with lhotse, resampled to 16 kHz, averaged to mono and written as a 16-bit
WAV under ``<out-dir>/audio/<split>/<cut-id>.wav``. Every file is written atomically.

A word missing from the lexicon is a :class:`DataError` naming the cut and the word, unless
``skip_oov`` drops such cuts from every file of the split (counted and logged).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet
from lhotse.cut import Cut

from speechkd.data.manifest_io import read_cuts
from speechkd.errors import DataError
from speechkd.mmi.lexicon import Lexicon
from speechkd.mmi.text_to_phones import split_words
from speechkd.utils.atomic import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
WORD_BOUNDARY = "|"


@dataclass
class ExportStats:
    """What :func:`export_fairseq` wrote."""

    utterances: int = 0
    samples: int = 0
    linked_audio: int = 0  # listed with the recording's own file
    written_audio: int = 0  # rendered to a new 16 kHz mono wav
    skipped_oov: list[str] = field(default_factory=list)  # cut ids left out (skip_oov)
    oov_words: Counter = field(default_factory=Counter)

    @property
    def hours(self) -> float:
        return self.samples / SAMPLE_RATE / 3600


def load_cut_union(paths: Sequence[str | os.PathLike]) -> CutSet:
    """The CutSets in ``paths`` concatenated; a missing file or a repeated cut id is an error."""
    cuts, seen = [], {}
    for path in map(Path, paths):
        if not path.is_file():
            raise DataError(f"{path}: no such CutSet")
        for cut in read_cuts(path):
            if cut.id in seen:
                raise DataError(f"{path}: cut {cut.id} already read from {seen[cut.id]}")
            seen[cut.id] = path
            cuts.append(cut)
    return CutSet.from_cuts(cuts)


def cut_language(cut: Cut) -> str | None:
    """The language of a cut's first supervision (``None`` without supervisions)."""
    return cut.supervisions[0].language if cut.supervisions else None


def select_cuts(cuts: Iterable[Cut], language: str | None = None) -> list[Cut]:
    """The cuts (of ``language`` if given) sorted by id: the order of every exported file."""
    selected = [c for c in cuts if language is None or cut_language(c) == language]
    return sorted(selected, key=lambda c: c.id)


def cut_words(cut: Cut) -> list[str]:
    """The normalised words of a cut's supervisions (in time order)."""
    sups = sorted(cut.supervisions, key=lambda s: s.start)
    text = " ".join(s.text or "" for s in sups)
    return [w for w in split_words(text) if w]


def letters_line(words: Sequence[str]) -> str:
    """fairseq's letter labels: ``h e l l o | w o r l d |``."""
    return " ".join(ch for w in words for ch in (*w, WORD_BOUNDARY))


def phones_of(words: Sequence[str], lexicon: Lexicon) -> tuple[list[str], list[str]]:
    """(phones of the words with their first pronunciations, words missing from the lexicon)."""
    phones, missing = [], []
    for word in words:
        prons = lexicon.entries.get(word)
        if prons is None:
            missing.append(word)
        else:
            phones.extend(prons[0])
    return phones, missing


def dictionary_text(counts: Counter, symbols: Sequence[str] = ()) -> str:
    """A fairseq ``dict.*.txt``: ``symbol count`` lines.

    Without ``symbols``: most frequent first (ties: symbol). With ``symbols`` (a phone table
    without its ``<eps>``/blank entry): exactly those symbols in table order (unseen ones with
    count 0), so that phone ``p`` of ``phones.txt`` is output column ``p + 3`` of a model (after
    fairseq's ``<s>`` = CTC blank, ``<pad>``, ``</s>``, ``<unk>``): the pdf order of a
    denominator graph built on that table (``pdf_offset=3`` of the distillation criterion).
    """
    if symbols:
        extra = sorted(set(counts) - set(symbols))
        if extra:
            raise DataError(f"symbols {extra} are not in the phone table")
        lines = [f"{s} {counts.get(s, 0)}" for s in symbols]
    else:
        lines = [f"{s} {n}" for s, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "".join(line + "\n" for line in lines)


def _resolve(source: str, path_prefix: Path | None) -> Path:
    path = Path(source)
    if not path.is_absolute() and path_prefix is not None:
        path = path_prefix / path
    return path.resolve()


def direct_audio_path(cut: Cut, path_prefix: Path | None = None) -> Path | None:
    """The file to list for ``cut`` when it is a whole single-channel 16 kHz file, else None.

    Raises a :class:`DataError` when such a file is missing or disagrees with its manifest.
    """
    rec = getattr(cut, "recording", None)
    if rec is None or len(rec.sources) != 1 or rec.sources[0].type != "file":
        return None
    if rec.transforms or rec.sampling_rate != SAMPLE_RATE or rec.num_channels != 1:
        return None
    if cut.start != 0 or cut.num_samples != rec.num_samples:
        return None
    path = _resolve(rec.sources[0].source, path_prefix)
    if not path.is_file():
        raise DataError(f"cut {cut.id}: audio file {path} not found")
    try:
        info = sf.info(str(path))
    except RuntimeError:
        return None  # not a format soundfile (and so fairseq) reads: render it
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise DataError(
            f"cut {cut.id}: {path} has {info.channels} channel(s) at {info.samplerate} Hz, the "
            f"manifest says 1 at {rec.sampling_rate} Hz"
        )
    if info.frames != rec.num_samples:
        raise DataError(
            f"cut {cut.id}: {path} has {info.frames} samples, the manifest says {rec.num_samples}"
        )
    return path


def render_audio(cut: Cut, path: Path) -> int:
    """Write ``cut``'s audio as 16 kHz mono 16-bit WAV at ``path`` (atomically); its samples."""
    if cut.sampling_rate != SAMPLE_RATE:
        cut = cut.resample(SAMPLE_RATE)
    audio = np.asarray(cut.load_audio(), dtype=np.float32)
    if audio.ndim == 2:
        audio = audio.mean(axis=0)
    if audio.size == 0:
        raise DataError(f"cut {cut.id}: no audio samples")
    peak = float(np.abs(audio).max())
    if peak > 1.0:
        logger.warning("cut %s: peak %.2f > 1 clipped when written as 16-bit PCM", cut.id, peak)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), np.clip(audio, -1.0, 1.0), SAMPLE_RATE, subtype="PCM_16", format="WAV")
    return int(audio.shape[0])


def export_fairseq(
    cuts: Iterable[Cut],
    out_dir: str | os.PathLike,
    split: str,
    lexicon: Lexicon | None = None,
    phones: Sequence[str] | None = None,
    labels: bool = True,
    skip_oov: bool = False,
    write_dicts: bool = True,
    path_prefix: str | os.PathLike | None = None,
) -> ExportStats:
    """Write ``<split>.tsv`` (+ ``.wrd``/``.ltr``/``.phn`` and dictionaries) for ``cuts``.

    ``cuts`` are exported in id order (see :func:`select_cuts`). ``labels=False`` writes only the
    manifest (unlabelled pre-training/distillation audio). ``.phn`` needs a ``lexicon``;
    ``phones`` (the symbols of ``phones.txt`` without ``<eps>``) checks every phone and makes
    ``dict.phn.txt`` list the whole table. ``path_prefix`` is the directory relative recording
    paths are relative to (default: the working directory).
    """
    out_dir = Path(out_dir)
    prefix = Path(path_prefix) if path_prefix is not None else None
    cuts = sorted(cuts, key=lambda c: c.id)
    if not cuts:
        raise DataError(f"{split}: no cuts to export")
    if phones is not None and lexicon is None:
        raise DataError("a phone table was given without a lexicon")
    phone_set = set(phones) if phones is not None else None
    stats = ExportStats()
    rows: list[tuple[Cut, list[str], list[str]]] = []
    for cut in cuts:
        words, cut_phones = [], []
        if labels:
            words = cut_words(cut)
            if not words:
                raise DataError(f"cut {cut.id}: empty transcript (nothing to label)")
            if lexicon is not None:
                cut_phones, missing = phones_of(words, lexicon)
                if missing:
                    if not skip_oov:
                        raise DataError(
                            f"cut {cut.id}: word {missing[0]!r} is not in the lexicon "
                            f"({len(missing)} such word(s); --skip-oov leaves such cuts out)"
                        )
                    stats.skipped_oov.append(cut.id)
                    stats.oov_words.update(missing)
                    continue
                if phone_set is not None:
                    unknown = sorted(set(cut_phones) - phone_set)
                    if unknown:
                        raise DataError(
                            f"cut {cut.id}: phones {unknown} of the lexicon are not in the "
                            "phone table"
                        )
        rows.append((cut, words, cut_phones))
    if not rows:
        raise DataError(f"{split}: every cut was left out (out-of-vocabulary words)")

    audio: list[tuple[Path, int]] = []
    for cut, _, _ in rows:
        path = direct_audio_path(cut, prefix)
        if path is not None:
            audio.append((path, cut.num_samples))
            stats.linked_audio += 1
        else:
            path = (out_dir / "audio" / split / f"{cut.id}.wav").resolve()
            audio.append((path, render_audio(cut, path)))
            stats.written_audio += 1
    root = Path(os.path.commonpath([str(p.parent) for p, _ in audio]))
    tsv = [str(root)] + [f"{p.relative_to(root)}\t{n}" for p, n in audio]
    atomic_write_text(out_dir / f"{split}.tsv", "\n".join(tsv) + "\n")
    stats.utterances = len(rows)
    stats.samples = sum(n for _, n in audio)

    if labels:
        _write_lines(out_dir / f"{split}.wrd", [" ".join(w) for _, w, _ in rows])
        ltr = [letters_line(w) for _, w, _ in rows]
        _write_lines(out_dir / f"{split}.ltr", ltr)
        if write_dicts:
            counts = Counter(s for line in ltr for s in line.split())
            atomic_write_text(out_dir / "dict.ltr.txt", dictionary_text(counts))
        if lexicon is not None:
            phn = [" ".join(p) for _, _, p in rows]
            _write_lines(out_dir / f"{split}.phn", phn)
            if write_dicts:
                counts = Counter(s for line in phn for s in line.split())
                atomic_write_text(out_dir / "dict.phn.txt", dictionary_text(counts, phones or ()))
    if stats.skipped_oov:
        logger.warning(
            "%s: %d cut(s) left out for out-of-vocabulary words (most frequent: %s)",
            split, len(stats.skipped_oov), stats.oov_words.most_common(5),
        )  # fmt: skip
    logger.info(
        "%s: %d utterances (%.2f h) to %s: %d listed with their own files, %d written as wav",
        split, stats.utterances, stats.hours, out_dir, stats.linked_audio, stats.written_audio,
    )  # fmt: skip
    return stats


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    atomic_write_text(path, "".join(line + "\n" for line in lines))
