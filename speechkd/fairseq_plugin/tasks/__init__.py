"""speechkd fairseq tasks (imported by speechkd.fairseq_plugin)."""
