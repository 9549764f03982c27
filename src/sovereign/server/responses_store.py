"""Stored Responses (``store: true``, the default): what ``previous_response_id`` continues from
and ``GET /v1/responses/{id}`` returns.

Each row keeps the conversation after that response (its history, its input and its output,
without the ``instructions``, which OpenAI does not carry over) and the response object as
sent. A response belongs to the identity that created it: any other caller gets 404, the same
answer as for an id that never existed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sovereign.errors import NotFoundError
from sovereign.kernel.messages import Message, ToolCall
from sovereign.store import Database

__all__ = ["ResponseStore", "StoredResponse", "messages_from_json", "messages_to_json"]

MIGRATIONS = [
    """
    CREATE TABLE api_responses (
        id          TEXT PRIMARY KEY,
        owner       TEXT NOT NULL,
        model       TEXT NOT NULL,
        previous_id TEXT,
        messages    TEXT NOT NULL,
        response    TEXT NOT NULL,
        created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now'))
    );
    CREATE INDEX api_responses_by_owner ON api_responses (owner, created_at);
    """
]


def messages_to_json(messages: list[Message]) -> str:
    return json.dumps([{
        "role": m.role, "content": m.content, "tool_call_id": m.tool_call_id,
        "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in m.tool_calls],
    } for m in messages], ensure_ascii=False)


def messages_from_json(text: str) -> list[Message]:
    return [Message(role=m["role"], content=m["content"], tool_call_id=m["tool_call_id"],
                    tool_calls=[ToolCall(name=c["name"], arguments=c["arguments"], id=c["id"]) for c in m["tool_calls"]])
            for m in json.loads(text)]


@dataclass(frozen=True, slots=True)
class StoredResponse:
    id: str
    owner: str
    messages: list[Message]
    response: dict[str, Any]


class ResponseStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("responses", MIGRATIONS)

    def put(self, response_id: str, owner: str, model: str, previous_id: str | None,
            messages: list[Message], response: dict[str, Any]) -> None:
        with self.db.transaction() as conn:
            conn.execute("INSERT INTO api_responses (id, owner, model, previous_id, messages, response) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (response_id, owner, model, previous_id, messages_to_json(messages),
                          json.dumps(response, ensure_ascii=False)))

    def get(self, response_id: str, owner: str, *, param: str | None = None) -> StoredResponse:
        """The stored response ``response_id`` of ``owner``; ``NotFoundError`` otherwise."""
        row = self.db.query_one("SELECT * FROM api_responses WHERE id = ? AND owner = ?", (response_id, owner))
        if row is None:
            raise NotFoundError(f"no stored response with id '{response_id}' (responses created with "
                                "store: false are not kept)", param=param, code="response_not_found")
        return StoredResponse(id=row["id"], owner=row["owner"], messages=messages_from_json(row["messages"]),
                              response=json.loads(row["response"]))

    def delete(self, response_id: str, owner: str) -> None:
        with self.db.transaction() as conn:
            cursor = conn.execute("DELETE FROM api_responses WHERE id = ? AND owner = ?", (response_id, owner))
        if cursor.rowcount == 0:
            raise NotFoundError(f"no stored response with id '{response_id}'", code="response_not_found")
