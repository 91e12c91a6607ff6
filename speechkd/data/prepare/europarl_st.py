"""Europarl-ST v1.1 speech translation (European Parliament speeches, 9 languages, all pairs).

Layout (as released)::

    <corpus_dir>/<src>/audios/<speech_id>.m4a             one recording per speech
    <corpus_dir>/<src>/<tgt>/<split>/segments.lst         "<speech_id> <start> <end>" (seconds)
    <corpus_dir>/<src>/<tgt>/<split>/segments.<src>       transcript, line i = segment i
    <corpus_dir>/<src>/<tgt>/<split>/segments.<tgt>       translation, line i = segment i

with splits ``train``, ``dev``, ``test`` (and ``train-noisy``, prepared only on request).
``corpus_dir`` may also be the ``v1.1`` directory's parent holding ``v1.1/``.

Audio: the release ships AAC in ``.m4a``, which libsndfile cannot read. lhotse then falls back to
its audioread backend, which decodes through the ``ffmpeg`` program (Debian package ``ffmpeg``;
torchaudio is not needed). Without ffmpeg the preparer stops with a DataError saying so. Decoding
a whole speech for every segment is slow in training, so the usual route is to convert the
audios once to 16 kHz mono flac (``local/prepare_europarl_st.sh --convert-to DIR`` runs
``ffmpeg -i x.m4a -ac 1 -ar 16000 DIR/x.flac``) and pass ``audio_dir=DIR, audio_ext="flac"``;
audio is looked up as ``<audio_dir>/<speech_id>.<audio_ext>`` (default audio_dir:
``<src>/audios``).

Per segment::

    supervision.id = "<speech_id>_<start cs>_<end cs>" (centiseconds, 7 digits: ESPnet's ids)
    supervision.text = transcript (language <src>), custom["translation"], custom["tgt_lang"]

Output splits are ``<src>-<tgt>_<split>`` (``europarl_st_cuts_en-de_test.jsonl.gz``), one cut per
segment.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from lhotse import SupervisionSegment

from speechkd.data.prepare.languages import to_iso639_1
from speechkd.data.prepare.st_common import (
    check_aligned,
    fit_to_recordings,
    parse_list_option,
    probe_recordings,
    read_text_lines,
    require_dir,
    save_segments,
)
from speechkd.data.textio import read_utf8_lines
from speechkd.errors import DataError

logger = logging.getLogger(__name__)

CORPUS = "europarl_st"
SPLITS = ("train", "dev", "test")
# Containers libsndfile cannot open; lhotse decodes them with the ffmpeg program.
NEEDS_FFMPEG = ("m4a", "mp4", "aac")


def find_root(corpus_dir: str | os.PathLike, src_lang: str) -> Path:
    """The directory holding ``<src>/``: ``corpus_dir`` or ``corpus_dir/v1.1``."""
    corpus_dir = Path(corpus_dir)
    for candidate in (corpus_dir, corpus_dir / "v1.1"):
        if (candidate / src_lang / "audios").is_dir():
            return candidate
    raise DataError(f"{corpus_dir}: no Europarl-ST {src_lang}/audios directory found")


def read_segment_list(path: Path) -> list[tuple[str, float, float]]:
    """``(speech_id, start, end)`` per line of ``segments.lst``."""
    segments = []
    for number, line in enumerate(read_utf8_lines(path), start=1):
        fields = line.split()
        if len(fields) != 3:
            raise DataError(f"{path}:{number}: expected '<speech_id> <start> <end>', got {line!r}")
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            raise DataError(f"{path}:{number}: start/end are not numbers: {line!r}") from None
        if end <= start:
            raise DataError(f"{path}:{number}: end {end} is not after start {start}")
        segments.append((fields[0], start, end))
    return segments


def check_decoder(audio_ext: str, example: Path) -> None:
    """Fail early when ``audio_ext`` needs ffmpeg and there is none."""
    if audio_ext.lower() in NEEDS_FFMPEG and shutil.which("ffmpeg") is None:
        raise DataError(
            f"{example}: .{audio_ext} audio needs the ffmpeg program to be decoded (lhotse's "
            "audioread backend), and none is on PATH; install it (Debian: apt-get install "
            "ffmpeg) or convert the audios to flac/wav and pass --audio-ext"
        )


def prepare_split(
    root: Path,
    src_lang: str,
    tgt_lang: str,
    split: str,
    audio_ext: str,
    audio_dir: Path | None = None,
    num_jobs: int = 1,
) -> tuple[list, list[SupervisionSegment]]:
    """Recordings and supervisions of one Europarl-ST split."""
    split_dir = require_dir(root / src_lang / tgt_lang / split, f"Europarl-ST {split} split")
    lst_path = split_dir / "segments.lst"
    src_path = split_dir / f"segments.{src_lang}"
    tgt_path = split_dir / f"segments.{tgt_lang}"
    segments = read_segment_list(lst_path)
    transcripts = read_text_lines(src_path)
    translations = read_text_lines(tgt_path)
    check_aligned(
        {lst_path: len(segments), src_path: len(transcripts), tgt_path: len(translations)}
    )
    audio_dir = audio_dir or root / src_lang / "audios"
    speeches: dict[str, Path] = {}
    supervisions = []
    tgt_iso, src_iso = to_iso639_1(tgt_lang), to_iso639_1(src_lang)
    for (speech, start, end), src, tgt in zip(segments, transcripts, translations, strict=True):
        speeches.setdefault(speech, audio_dir / f"{speech}.{audio_ext}")
        supervisions.append(
            SupervisionSegment(
                id=f"{speech}_{round(start * 100):07d}_{round(end * 100):07d}",
                recording_id=speech,
                start=round(start, 6),
                duration=round(end - start, 6),
                channel=0,
                text=src,
                language=src_iso,
                custom={"translation": tgt, "tgt_lang": tgt_iso},
            )
        )
    if speeches:
        check_decoder(audio_ext, next(iter(speeches.values())))
    recordings = probe_recordings(
        list(speeches.items()), num_jobs=num_jobs, desc=f"Europarl-ST {split}"
    )
    supervisions = fit_to_recordings(supervisions, {r.id: r for r in recordings}, str(lst_path))
    return recordings, supervisions


def prepare(
    corpus_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    src_lang: str = "en",
    tgt_lang: str = "de",
    splits: str | list[str] | None = None,
    audio_ext: str = "m4a",
    audio_dir: str | os.PathLike | None = None,
    num_jobs: int = 1,
) -> dict[str, dict[str, Path]]:
    """Prepare Europarl-ST ``src_lang``→``tgt_lang`` manifests.

    ``splits``: default train, dev, test (those present, at least one); ``train-noisy`` on
    request. ``audio_ext``: extension of the audio files (m4a as released); ``audio_dir``:
    where they are (default ``<src>/audios``, e.g. a directory of converted flac files).
    Returns ``{"<src>-<tgt>_<split>": {kind: path}}``.
    """
    root = find_root(corpus_dir, src_lang)
    pair_dir = require_dir(root / src_lang / tgt_lang, f"Europarl-ST {src_lang}-{tgt_lang} pair")
    audio_ext = audio_ext.lstrip(".")
    audio_path = require_dir(Path(audio_dir), "audio directory") if audio_dir else None
    wanted = parse_list_option(splits, "splits")
    if wanted is None:
        wanted = [s for s in SPLITS if (pair_dir / s).is_dir()]
        if not wanted:
            raise DataError(f"{pair_dir}: none of the splits {', '.join(SPLITS)} found")
    written = {}
    for split in wanted:
        recordings, supervisions = prepare_split(
            root, src_lang, tgt_lang, split, audio_ext, audio_path, num_jobs
        )
        name = f"{src_lang}-{tgt_lang}_{split}"
        written[name] = save_segments(CORPUS, name, recordings, supervisions, output_dir)
    return written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of :func:`prepare` for the prepare_corpus command line."""
    parser.add_argument("--src-lang", default="en", help="language spoken (en, de, fr, ...)")
    parser.add_argument("--tgt-lang", default="de", help="translation language")
    parser.add_argument(
        "--splits", default=None, help="comma-separated (default: train,dev,test present)"
    )
    parser.add_argument(
        "--audio-ext",
        default="m4a",
        help="extension of <src>/audios/<id>.<ext>: m4a as released (needs ffmpeg), or flac/wav",
    )
    parser.add_argument(
        "--audio-dir", default=None, help="directory of the audio files (default <src>/audios)"
    )
    parser.add_argument("--num-jobs", type=int, default=1, help="threads reading audio headers")
