"""The knowledge tables (component ``knowledge``): documents, chunks (corpus and knowledge units),
the links from each unit to its source chunks, and an FTS5 index over chunk text."""

from __future__ import annotations

MIGRATIONS = [
    """
    CREATE TABLE kb_documents (
        id          INTEGER PRIMARY KEY,
        path        TEXT NOT NULL UNIQUE,
        format      TEXT NOT NULL,
        sha256      TEXT NOT NULL,
        pages       INTEGER NOT NULL,
        ingested_at TEXT NOT NULL
    );
    CREATE TABLE kb_chunks (
        n          INTEGER PRIMARY KEY,
        doc_id     INTEGER REFERENCES kb_documents (id) ON DELETE CASCADE,
        kind       TEXT NOT NULL CHECK (kind IN ('chunk', 'unit')),
        ordinal    INTEGER NOT NULL,
        section    TEXT NOT NULL,
        page       INTEGER,
        text       TEXT NOT NULL,
        question   TEXT,
        vector     BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX kb_chunks_doc ON kb_chunks (doc_id);
    -- A knowledge unit's sources, by citation (kept when the source file is re-ingested).
    CREATE TABLE kb_unit_sources (
        unit_n   INTEGER NOT NULL REFERENCES kb_chunks (n) ON DELETE CASCADE,
        path     TEXT NOT NULL,
        section  TEXT NOT NULL,
        ordinal  INTEGER NOT NULL
    );
    CREATE INDEX kb_unit_sources_unit ON kb_unit_sources (unit_n);
    CREATE VIRTUAL TABLE kb_fts USING fts5 (text, section, tokenize = 'porter unicode61');
    CREATE TABLE kb_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO kb_state VALUES ('version', '0');
    """,
]
