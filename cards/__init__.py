"""Dataset card rendering and versioned Hub publishing."""
