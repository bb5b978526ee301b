"""Generation library shared by `traces`, the `verify` judge and `eval`: backends and their registry
(offline vLLM, OpenAI-compatible servers, the Batch API), the content-addressed cache, cache keys,
budgets and the generate loop."""
