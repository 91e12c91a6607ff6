"""Subword and character units: sentencepiece models with an icefall-style ``tokens.txt``.

``train_sentencepiece`` writes ``<out_dir>/<model_type>.model`` (``bpe.model``,
``unigram.model`` or ``char.model``) and ``<out_dir>/tokens.txt`` (one ``token id`` per line, as
icefall's ``data/lang_bpe_*``). Training is deterministic: the same text and options give the same
model bytes (one thread, a fixed random seed, no input paths recorded in the model).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from speechkd.data.textio import read_utf8_lines
from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import atomic_write_bytes, atomic_write_text

logger = logging.getLogger(__name__)

MODEL_TYPES = ("bpe", "unigram", "char")
# sentencepiece's default limit on a sentence's length in bytes; longer lines would be skipped
# silently by the trainer, so the limit is raised to the longest line instead.
_SPM_DEFAULT_MAX_SENTENCE_BYTES = 4192

_CHAR_PROBE_SIZE = 1_000_000

TextSource = str | os.PathLike | Iterable[str | os.PathLike]


def _iter_sources(sources: TextSource) -> Iterator[tuple[str, list[str]]]:
    """Yield ``(name, lines)`` per source: each file, then the plain strings as one block."""
    if isinstance(sources, str | os.PathLike):
        sources = [Path(sources)]
    lines: list[str] = []
    for item in sources:
        if isinstance(item, os.PathLike):
            yield str(item), read_utf8_lines(item)
        elif isinstance(item, str):
            lines.append(item)
        else:
            raise DataError(f"text source {item!r}: expected a path or a line of text")
    if lines:
        yield "<given lines>", lines


def read_training_text(sources: TextSource) -> list[str]:
    """Collect the non-blank lines of ``sources``; any source without text is a ``DataError``.

    ``sources`` is one file path, or an iterable whose ``pathlib.Path`` (``os.PathLike``) items are
    files and whose ``str`` items are lines of text.
    """
    text: list[str] = []
    for name, lines in _iter_sources(sources):
        kept = [line.strip() for line in lines if line.strip()]
        if not kept:
            raise DataError(f"{name}: no text to train units on (empty or blank lines only)")
        text.extend(kept)
    if not text:
        raise DataError("no text sources given to train units on")
    return text


def _train_model_bytes(lines: Sequence[str], seed: int, **options) -> bytes:
    import sentencepiece as spm

    spm.set_random_generator_seed(seed)
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=writer, num_threads=1, minloglevel=2, **options
    )
    return writer.getvalue()


def _num_pieces(model: bytes) -> int:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_proto=model).get_piece_size()


def train_sentencepiece_bytes(
    text_files_or_lines: TextSource,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    user_defined_symbols: Sequence[str] = (),
    seed: int = 0,
) -> bytes:
    """Train a sentencepiece model and return its serialized bytes (see ``train_sentencepiece``)."""
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"model_type={model_type!r}: expected one of {', '.join(MODEL_TYPES)}")
    if not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ConfigError(f"vocab_size={vocab_size!r}: must be a positive integer")
    if not 0.0 < character_coverage <= 1.0:
        raise ConfigError(f"character_coverage={character_coverage!r}: must be in (0, 1]")
    symbols = list(user_defined_symbols)
    if len(set(symbols)) != len(symbols):
        raise ConfigError(f"user_defined_symbols={symbols!r}: contains duplicates")
    minimum = len(symbols) + 2
    if vocab_size < minimum:
        raise ConfigError(
            f"vocab_size={vocab_size}: must be at least {minimum} "
            f"(<unk>, the user-defined symbols and one piece)"
        )
    lines = read_training_text(text_files_or_lines)
    longest = max(len(line.encode("utf-8")) for line in lines)
    options = dict(
        model_type=model_type,
        character_coverage=character_coverage,
        user_defined_symbols=symbols,
        # icefall layout: user-defined symbols (e.g. <blk>, <sos/eos>) first, then <unk>.
        unk_id=len(symbols),
        bos_id=-1,
        eos_id=-1,
        input_sentence_size=0,
        shuffle_input_sentence=False,
        max_sentence_length=max(_SPM_DEFAULT_MAX_SENTENCE_BYTES, longest + 1),
    )
    if model_type == "char":
        # The char trainer truncates the alphabet silently: check that nothing would be cut off.
        probe = _train_model_bytes(lines, seed, vocab_size=_CHAR_PROBE_SIZE, **options)
        needed = _num_pieces(probe)
        if needed > vocab_size:
            raise ConfigError(
                f"vocab_size={vocab_size}: too small for a char model of this text, which needs "
                f"{needed} units (its characters, <unk> and the user-defined symbols)"
            )
    try:
        model = _train_model_bytes(lines, seed, vocab_size=vocab_size, **options)
    except RuntimeError as err:
        if "Vocabulary size" not in str(err):
            raise
        reason = str(err).split("]", 1)[-1].strip()
        raise ConfigError(f"vocab_size={vocab_size}: does not fit this text: {reason}") from None
    return model


def train_sentencepiece(
    text_files_or_lines: TextSource,
    out_dir: str | os.PathLike,
    vocab_size: int,
    model_type: str = "bpe",
    character_coverage: float = 1.0,
    user_defined_symbols: Sequence[str] = (),
    seed: int = 0,
) -> Path:
    """Train a sentencepiece model; write ``<model_type>.model`` and ``tokens.txt`` to ``out_dir``.

    ``text_files_or_lines`` is one file path, or an iterable of ``pathlib.Path`` files and/or
    ``str`` lines. Blank lines are ignored; a source with no text is a ``DataError`` naming it.
    A ``vocab_size`` that is not positive or too large for the text (bpe, unigram) or too small for
    its alphabet (char) is a ``ConfigError`` with the trainer's reason. User-defined symbols take
    the first ids, followed by ``<unk>``; there are no ``<s>``/``</s>`` pieces (icefall layout).
    Returns the model path.
    """
    model = train_sentencepiece_bytes(
        text_files_or_lines,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        user_defined_symbols=user_defined_symbols,
        seed=seed,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = out_dir / f"{model_type}.model"
    atomic_write_bytes(model_path, model)
    atomic_write_text(out_dir / "tokens.txt", tokens_txt(model))
    logger.info("Wrote %s (%d units) and tokens.txt", model_path, _num_pieces(model))
    return model_path


def tokens_txt(model: bytes | str | os.PathLike) -> str:
    """The icefall ``tokens.txt`` text (``token id`` per line) of a sentencepiece model."""
    import sentencepiece as spm

    if isinstance(model, bytes):
        sp = spm.SentencePieceProcessor(model_proto=model)
    else:
        sp = spm.SentencePieceProcessor(model_file=str(model))
    return "".join(f"{sp.id_to_piece(i)} {i}\n" for i in range(sp.get_piece_size()))


def read_tokens_txt(path: str | os.PathLike) -> dict[str, int]:
    """Read an icefall ``tokens.txt`` into ``{token: id}``; malformed lines are a ``DataError``."""
    table: dict[str, int] = {}
    for number, line in enumerate(read_utf8_lines(path), start=1):
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DataError(f"{path}:{number}: expected 'token id', got {line!r}")
        if fields[0] in table:
            raise DataError(f"{path}:{number}: token {fields[0]!r} listed twice")
        table[fields[0]] = int(fields[1])
    return table


def load_sentencepiece(path: str | os.PathLike):
    """Load a ``sentencepiece.SentencePieceProcessor`` from a model file or a lang directory."""
    import sentencepiece as spm

    path = Path(path)
    if path.is_dir():
        models = sorted(path / f"{t}.model" for t in MODEL_TYPES if (path / f"{t}.model").is_file())
        if len(models) != 1:
            raise DataError(f"{path}: expected exactly one of {{bpe,unigram,char}}.model")
        path = models[0]
    if not path.is_file():
        raise DataError(f"{path}: sentencepiece model not found")
    return spm.SentencePieceProcessor(model_file=str(path))
