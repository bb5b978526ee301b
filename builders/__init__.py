"""The data stages before dedup and after it: `prompts`, `license`, `traces`, `verify` (a package
each, entry in its `__main__`), the generation library they and `eval` share, and the tiny models."""
