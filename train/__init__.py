"""Reference fine-tuning on the release (progressive, packed SFT) and the held-out evaluation."""
