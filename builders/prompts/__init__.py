"""Stage `prompts` (`python -m builders.prompts`): FLAN-v2 sampled by the Orca recipe, with system
messages, streamed through task buckets."""
