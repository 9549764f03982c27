"""The HTTP API: OpenAI-compatible endpoints plus sovereign's native ones."""
