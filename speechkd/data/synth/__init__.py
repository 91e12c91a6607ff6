"""Synthetic corpus generation: espeak-ng speech, text grammars and word lists."""
