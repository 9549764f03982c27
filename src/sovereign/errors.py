"""The one exception tree: user misuse, run failures and control-flow signals.

Exceptions are plain data. Each carries an HTTP status and an OpenAI-style ``type``/``code``
so the server can turn any of them into a clear error body without guessing.
"""

from __future__ import annotations


class SovereignError(Exception):
    """Base of every error sovereign raises on purpose."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.param = param


# --- user misuse -------------------------------------------------------------------------


class UserError(SovereignError):
    """The caller asked for something invalid; fixing the request fixes it."""

    status_code = 400
    error_type = "invalid_request_error"


class ConfigError(UserError):
    """The configuration file or an environment override is invalid."""

    code = "invalid_config"


class InvalidRequestError(UserError):
    """A request parameter is malformed or out of range."""

    code = "invalid_request"


class UnknownModelError(UserError):
    """The requested model is not in the registry."""

    status_code = 404
    code = "model_not_found"


class ContextOverflowError(UserError):
    """The prompt plus the requested completion does not fit the model's context."""

    code = "context_length_exceeded"


class InvalidToolSchemaError(UserError):
    """A tool definition is not a valid function schema."""

    code = "invalid_tool_schema"


class AuthenticationError(SovereignError):
    """No API key, or one that is unknown, expired or revoked."""

    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDeniedError(SovereignError):
    """The key is valid but its scopes do not cover the request."""

    status_code = 403
    error_type = "permission_error"
    code = "forbidden"


class NotFoundError(UserError):
    """A named object (run, key, memory item, ...) does not exist."""

    status_code = 404
    code = "not_found"


# --- policy and limits -------------------------------------------------------------------


class EgressDeniedError(SovereignError):
    """The egress gate refused an outbound connection."""

    status_code = 403
    error_type = "egress_denied"
    code = "egress_denied"


class RoutingRefusedError(SovereignError):
    """``model: "auto"``: no model the policy allows can serve the request; the message names
    the constraint (data class, residency, licence, offline, key scope)."""

    status_code = 403
    error_type = "permission_error"
    code = "routing_policy"


class SpendCapExceededError(SovereignError):
    """A hard spend or token cap would be exceeded by this request."""

    status_code = 429
    error_type = "rate_limit_error"
    code = "spend_cap_exceeded"


# --- run failures --------------------------------------------------------------------------


class WeightsError(SovereignError):
    """Model weights are missing, incomplete or fail verification."""

    error_type = "weights_error"
    code = "weights_invalid"


class WeightsVerificationError(WeightsError):
    """The weights on disk do not have the SHA-256 the registry pins."""

    code = "weights_hash_mismatch"


class ModelUnavailableError(SovereignError):
    """The model cannot serve right now (still loading, backend down)."""

    status_code = 503
    error_type = "service_unavailable"
    code = "model_unavailable"


class BackendError(SovereignError):
    """A remote model backend answered with an error or could not be reached."""

    status_code = 502
    error_type = "backend_error"
    code = "backend_error"
