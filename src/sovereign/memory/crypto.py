"""Memory encryption at rest: one 256-bit key, AES-GCM for text and vectors, HMAC for search terms.

The key lives in ``$SOVEREIGN_HOME/memory.key`` (created on first use, mode 0600; a key file
readable by group or others is refused) or comes from ``SOVEREIGN_MEMORY_KEY`` (URL-safe base64
of 32 bytes). Two sub-keys are derived from it with HKDF-SHA256:

- the *content key* encrypts each item's text and its embedding vector with AES-256-GCM; the
  item's id is the associated data, so a ciphertext cannot be moved onto another row;
- the *term key* derives one key per search scope (an owner and agent),
  ``HMAC-SHA256(term key, scope)``, and each normalised word becomes ``HMAC-SHA256(scope key,
  word)`` truncated to 80 bits. Full-text search (SQLite FTS5, BM25) runs over these keyed
  hashes, so the FTS index holds no readable word, and the same word hashes differently in each
  scope: a search only ever matches its own scope's rows, and rows of different scopes cannot be
  linked by shared words. What it does reveal: how many terms an item has and which items of one
  scope share a term (frequency analysis over a large scope could guess common words) — never
  the text.

A key check value is stored beside the data, so opening a database with the wrong key fails
with a clear error instead of returning garbage.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from sovereign.errors import ConfigError, SovereignError
from sovereign.store.secret_file import create_secret_file

__all__ = ["MemoryCipher", "load_key", "KEY_ENV", "KEY_FILE"]

KEY_ENV = "SOVEREIGN_MEMORY_KEY"
KEY_FILE = "memory.key"
_NONCE = 12


class MemoryDecryptError(SovereignError):
    """A stored memory could not be decrypted (wrong key or tampered data)."""

    error_type = "memory_decrypt_error"
    code = "memory_decrypt_failed"


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(text.strip().encode("ascii") + b"==")
    except (ValueError, UnicodeEncodeError) as exc:
        raise ConfigError(f"{where} is not URL-safe base64: {exc}") from exc
    if len(key) != 32:
        raise ConfigError(f"{where} must decode to 32 bytes, got {len(key)}")
    return key


def load_key(home: Path) -> bytes:
    """The memory key: from ``SOVEREIGN_MEMORY_KEY``, else ``home/memory.key`` (created if absent)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return _decode_key(env, KEY_ENV)
    path = Path(home) / KEY_FILE
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise ConfigError(f"{path} is readable by others (mode {mode:o}); run: chmod 600 {path}")
        return _decode_key(path.read_text(encoding="ascii"), str(path))
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    if not create_secret_file(path, (encoded + "\n").encode("ascii")):
        return load_key(home)  # another process created it first
    return _decode_key(encoded, str(path))


def _derive(key: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"sovereign-memory/" + purpose).derive(key)


class MemoryCipher:
    """Encrypts and decrypts memory fields; hashes search terms under the term key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ConfigError("the memory key must be 32 bytes")
        self._aead = AESGCM(_derive(key, b"content"))
        self._term_key = _derive(key, b"terms")
        self._scope_keys: dict[str, bytes] = {}
        self.check_value = hmac.new(_derive(key, b"check"), b"key-check", hashlib.sha256).hexdigest()

    def encrypt(self, plain: bytes, associated: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE)
        return nonce + self._aead.encrypt(nonce, plain, associated.encode("utf-8"))

    def decrypt(self, blob: bytes, associated: str) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], associated.encode("utf-8"))
        except InvalidTag as exc:
            raise MemoryDecryptError(f"memory item {associated} could not be decrypted") from exc

    def encrypt_text(self, text: str, associated: str) -> bytes:
        return self.encrypt(text.encode("utf-8"), associated)

    def decrypt_text(self, blob: bytes, associated: str) -> str:
        return self.decrypt(blob, associated).decode("utf-8")

    def term(self, word: str, scope: str) -> str:
        """The keyed hash standing for ``word`` of ``scope`` in the full-text index (20 hex digits)."""
        key = self._scope_keys.get(scope)
        if key is None:
            key = self._scope_keys[scope] = hmac.new(self._term_key, scope.encode("utf-8"), hashlib.sha256).digest()
        return "h" + hmac.new(key, word.encode("utf-8"), hashlib.sha256).hexdigest()[:20]
