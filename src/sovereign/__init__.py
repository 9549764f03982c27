"""sovereign: a local-first thinking-model operating system."""

__version__ = "0.1.0"
