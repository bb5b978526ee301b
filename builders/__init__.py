"""FLAN sources, Orca sampling, system messages, licenses, teacher generation and response filters."""
