"""speechkd fairseq criterions (imported by speechkd.fairseq_plugin)."""
