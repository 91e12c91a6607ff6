"""A miniature AISHELL-1: data_aishell/wav/<part>/<spk>/*.wav + transcript/*_v0.8.txt."""

from __future__ import annotations

from pathlib import Path

from fake_corpora.tone import write_tone

# part -> speaker -> [(utterance id, transcript with word spaces or None for no transcript)]
UTTERANCES = {
    "train": {
        "S0002": [
            ("BAC009S0002W0122", "而 对 楼市 成交 抑制 作用 最 大 的 限 购"),
            ("BAC009S0002W0123", "也 成为 地方 政府 的 眼中 钉"),
        ],
        "S0003": [("BAC009S0003W0121", "ｋ 歌 好 听"), ("BAC009S0003W0199", None)],
    },
    "dev": {"S0724": [("BAC009S0724W0121", "广州 市 房地产 中介 协会 分析")]},
    "test": {"S0764": [("BAC009S0764W0121", "甚至 出现 交易 几乎 停滞 的 情况")]},
}
# A transcript line whose audio is not in the release (the real transcript has such lines).
EXTRA_LINES = ["BAC009S0999W0001 没有 音频"]


def build_aishell(root: Path) -> Path:
    """Write ``root/data_aishell`` and return ``root``."""
    lines = list(EXTRA_LINES)
    for part, speakers in UTTERANCES.items():
        for speaker, utts in speakers.items():
            for uid, text in utts:
                write_tone(
                    root / "data_aishell" / "wav" / part / speaker / f"{uid}.wav", 0.4, 16000
                )
                if text is not None:
                    lines.append(f"{uid} {text}")
    transcript = root / "data_aishell" / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.parent.mkdir(parents=True, exist_ok=True)
    transcript.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    return root
