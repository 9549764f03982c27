"""Errors of the perception layer: bad input (not audio, not an image, too long, unsupported
format) is the caller's to fix (4xx naming the problem); a missing engine is the install's."""

from __future__ import annotations

from sovereign.errors import SovereignError, UserError

__all__ = ["EngineUnavailableError", "PerceptionInputError", "TooLargeError", "UnsupportedFormatError"]


class PerceptionInputError(UserError):
    """The audio or image given cannot be used (empty, undecodable, wrong kind of file)."""

    code = "invalid_media"


class UnsupportedFormatError(UserError):
    """A response or file format this engine cannot produce or read."""

    code = "unsupported_format"


class TooLargeError(UserError):
    """Audio longer, text longer or an image larger than the configured limit."""

    status_code = 413
    code = "media_too_large"


class EngineUnavailableError(SovereignError):
    """The engine a perception model needs is not installed here (an optional extra, a Debian
    package); the message says how to install it."""

    status_code = 503
    error_type = "service_unavailable"
    code = "engine_unavailable"
