"""speechkd fairseq models (imported by speechkd.fairseq_plugin)."""
