"""Teacher generation: configs, backends (offline vLLM, OpenAI-compatible servers), cache, filters."""
