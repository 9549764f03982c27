"""Perception: read images (OCR), hear speech (Whisper), speak (Piper, espeak-ng) — local
models whose weights are verified like the language models, called on the governed path."""
