"""The model's view of a run: the transcript messages of its steps, kept current step by step,
with their token estimate counted once per message.

Rebuilding the transcript and re-counting every message on every turn makes a long run
quadratic; the view extends the message list as steps arrive and starts over only when a
summary replaces older steps.
"""

from __future__ import annotations

from sovereign.agent.compaction import TokenCounter, message_tokens, rough_count
from sovereign.agent.steps import Step, SummaryStep, TaskStep, transcript
from sovereign.kernel.messages import Message

__all__ = ["TranscriptView"]


class TranscriptView:
    def __init__(self, steps: list[Step]) -> None:
        self.messages: list[Message] = []
        self._sizes: list[int] = []
        self._total = 0
        self._counter: TokenCounter | None = None
        self.reset(steps)

    def reset(self, steps: list[Step]) -> None:
        """Rebuild from all of ``steps`` (the task, the latest summary, what it does not cover)."""
        self.messages = transcript(steps)
        self._sizes, self._total = [], 0

    def add(self, step: Step, steps: list[Step]) -> None:
        """Take in ``step`` (already appended to ``steps``)."""
        if isinstance(step, (SummaryStep, TaskStep)):
            self.reset(steps)
        else:
            self.messages.extend(step.to_messages())

    def tokens(self, counter: TokenCounter | None) -> int:
        """Upper estimate of the messages' share of a prompt; only new messages are counted."""
        if counter != self._counter:
            self._counter, self._sizes, self._total = counter, [], 0
        count = counter or rough_count
        for message in self.messages[len(self._sizes):]:
            size = message_tokens(message, count)
            self._sizes.append(size)
            self._total += size
        return self._total
