"""Completions: context → prompt → engine → postprocess. Knows nothing of LSP or the journal."""
