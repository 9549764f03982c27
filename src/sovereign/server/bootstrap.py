"""First start: make sure an admin identity and an admin API key exist."""

from __future__ import annotations

from sovereign.services import Services


def bootstrap_admin_key(services: Services, explicit_key: str | None = None) -> str | None:
    """Register ``explicit_key`` (or ``SOVEREIGN_API_KEY``) as an admin key, or create one on
    first start. Returns a secret only when it is new (shown once), else None."""
    admin = services.keys.ensure_admin()
    secret = explicit_key or (services.settings.api_key.get_secret_value() if services.settings.api_key else None)
    if secret:
        from sovereign.governance.keys import hash_key

        if services.db.query_one("SELECT 1 FROM api_keys WHERE key_hash = ?", (hash_key(secret),)) is None:
            services.keys.create_key(admin, name="admin (configured)", secret=secret)
        return None
    if services.keys.has_keys():
        return None
    _key_id, secret = services.keys.create_key(admin, name="admin (first start)")
    return secret
