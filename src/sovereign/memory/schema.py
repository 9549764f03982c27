"""The memory tables (component ``memory``): encrypted items, a keyed-term FTS5 index, state."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE memory_items (
        n             INTEGER PRIMARY KEY,
        id            TEXT NOT NULL UNIQUE,
        owner         TEXT NOT NULL,
        agent         TEXT NOT NULL,
        kind          TEXT NOT NULL CHECK (kind IN ('fact', 'episode', 'summary')),
        session       TEXT,
        source        TEXT NOT NULL,
        confidence    REAL NOT NULL CHECK (confidence >= 0 AND confidence <= 1),
        status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'superseded')),
        superseded_by TEXT,
        created_at    TEXT NOT NULL,
        updated_at    TEXT NOT NULL,
        content       BLOB NOT NULL,
        vector        BLOB NOT NULL
    );
    CREATE INDEX memory_items_scope ON memory_items (owner, agent, status, kind);
    CREATE INDEX memory_items_superseded ON memory_items (superseded_by);
    -- Each document is the item's term hashes, keyed per (owner, agent) scope (see crypto.py).
    CREATE VIRTUAL TABLE memory_terms USING fts5 (terms, tokenize = 'ascii');
    CREATE TABLE memory_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]
