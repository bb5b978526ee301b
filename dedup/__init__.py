"""Exact and MinHash near-duplicate removal, decontamination against evaluation sets."""
