"""Speech synthesis with espeak-ng and sox into 16 kHz mono 16-bit wav files."""

from __future__ import annotations

import functools
import shutil
import subprocess
from pathlib import Path
from xml.sax.saxutils import escape

import soundfile as sf

from speechkd.data.synth.speakers import SpeakerProfile
from speechkd.errors import DataError
from speechkd.utils.atomic import atomic_path

SAMPLE_RATE = 16000
MAX_DURATION = 30.0


def require_binary(name: str) -> str:
    """The full path of executable ``name``; DataError when it is not installed."""
    path = shutil.which(name)
    if path is None:
        raise DataError(
            f"{name} not found on PATH: install it (Debian/Ubuntu: apt-get install espeak-ng sox)"
        )
    return path


@functools.cache
def _installed_voices(espeak: str) -> tuple[frozenset[str], frozenset[str]]:
    def column(args: list[str], index: int) -> set[str]:
        out = subprocess.run([espeak, *args], capture_output=True, text=True, check=True).stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return {row[index] for row in rows if len(row) > index}

    languages = column(["--voices"], 1)
    variants = {name.split("/")[-1] for name in column(["--voices=variant"], 4)}
    return frozenset(languages), frozenset(variants)


def check_voices(espeak: str, voices: set[str], variants: set[str]) -> None:
    """DataError naming every espeak-ng voice or variant that is not installed."""
    languages, installed_variants = _installed_voices(require_binary(espeak))
    missing = sorted(voices - languages) + sorted(f"+{v}" for v in variants - installed_variants)
    if missing:
        raise DataError(
            f"{espeak} lacks the voice(s) {', '.join(missing)} (see espeak-ng --voices)"
        )


def espeak_command(espeak: str, voice: str, spk: SpeakerProfile, spoken: str) -> list[str]:
    """The espeak-ng call that writes a wav for ``spoken`` to stdout."""
    ssml = f'<speak><prosody range="{spk.pitch_range}%">{escape(spoken)}</prosody></speak>'
    return [
        espeak, "-m", "-v", f"{voice}+{spk.variant}", "-p", str(spk.pitch), "-s", str(spk.rate),
        "-a", str(spk.amplitude), "--stdout", ssml,
    ]  # fmt: skip


def sox_command(sox: str, spk: SpeakerProfile, out_path: Path) -> list[str]:
    """The sox call that turns espeak-ng's wav on stdin into a 16 kHz mono 16-bit file.

    ``-R`` seeds sox's dither, so the output is repeatable.
    """
    effects = ["gain", f"{spk.gain_db - 2.0:.1f}"]  # 2 dB headroom for the effects below
    if spk.pitch_shift_cents:
        effects += ["pitch", str(spk.pitch_shift_cents)]
    if spk.tempo != 1.0:
        effects += ["tempo", "-s", f"{spk.tempo:.3f}"]
    effects += ["rate", str(SAMPLE_RATE)]
    return [
        sox, "-R", "-t", "wav", "-", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
        "-e", "signed-integer", str(out_path), *effects,
    ]  # fmt: skip


def synthesize(
    spoken: str,
    voice: str,
    spk: SpeakerProfile,
    out_path: str | Path,
    espeak: str = "espeak-ng",
    sox: str = "sox",
) -> int:
    """Speak ``spoken`` with ``voice`` and ``spk`` into ``out_path`` (atomically); returns the
    number of samples. DataError when a tool fails or the audio is empty or too long."""
    out_path = Path(out_path)
    with atomic_path(out_path) as tmp:
        speech = subprocess.run(espeak_command(espeak, voice, spk, spoken), capture_output=True)
        if speech.returncode != 0 or len(speech.stdout) <= 44:
            raise DataError(
                f"{out_path.name}: espeak-ng voice {voice}+{spk.variant} produced no audio for "
                f"{spoken!r}: {speech.stderr.decode(errors='replace').strip()}"
            )
        conv = subprocess.run(sox_command(sox, spk, tmp), input=speech.stdout, capture_output=True)
        if conv.returncode != 0:
            raise DataError(f"{out_path.name}: sox failed: {conv.stderr.decode(errors='replace')}")
        num_samples = check_wav(tmp, name=out_path.name)
    return num_samples


def check_wav(path: str | Path, name: str | None = None) -> int:
    """Number of samples of a finished wav; DataError unless 16 kHz mono, 0 < duration < 30 s."""
    name = name or str(path)
    try:
        info = sf.info(str(path))
    except RuntimeError as err:
        raise DataError(f"{name}: unreadable wav ({err})") from None
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        raise DataError(f"{name}: expected 16 kHz mono, got {info.samplerate} Hz x{info.channels}")
    if not 0 < info.frames < MAX_DURATION * SAMPLE_RATE:
        raise DataError(f"{name}: duration {info.frames / SAMPLE_RATE:.2f} s is not in (0, 30)")
    return int(info.frames)
