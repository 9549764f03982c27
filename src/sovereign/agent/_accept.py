"""Answer acceptance for the agent loop (a mixin of ``Session``): what a model turn that makes
no tool call is taken as. An answer is accepted only when it is not empty, carries no tool-call
syntax, the files the task names were read, a task that asks for a file to be written saw a
write, no file it wrote is left unparseable or with a stray empty line before what it added, it
is not a void value (``None``) or a request for context from an agent that can look for itself,
it does not deny what the agent read, it holds the kind of value asked for (an email address, a
count, a "how much" number), names its pick when the task asks "which of A and B", does not name
a file that lacks the definition the task asks about, and (code mode) it states no number, date
or weekday that nothing the run read or computed holds (a guess), does not ignore a value
the task names that the data holds, pick by position a row other than the one holding that
value, take it from a part of a file other than the part the task names, total one element of
lists that hold several, come from inside a loop (final_answer ends the run at its first turn),
from one of several files the task asks about, or converted out of a unit the data already had,
state a negative count, nor lose an order the task keeps; otherwise the model gets a
correction. The checks for tasks that ask for a file to be written are in ``_accept_writes``. In code mode a correction shows code to run where it can (the
model's own block with the fix, the line that saves the answered value): a small model told in
prose what to change seldom does it, and copies a block it is shown. Calls a model wrote as text
are recovered and run; invalid actions in a row past the agent's ``max_corrections`` end the run
as ``failed``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.agent.answer_check import (
    asks_for_a_write,
    blank_line_writes,
    broken_writes,
    call_markup,
    denied_but_seen,
    filtered_block,
    IgnoredValue,
    ignored_value,
    material_read,
    non_answer,
    ordered_dedupe,
    replay_code,
    touched_arguments,
    unread_paths,
    usage_of,
    void_answer,
)
from sovereign.agent.answer_grounding import (
    asks_for_a_line,
    computed_final,
    how_to_compute,
    line_out_of_range,
    negative_count,
    ungrounded_value,
)
from sovereign.agent.file_scope import one_file_only
from sovereign.agent.unit_check import needless_conversion
from sovereign.agent._accept_writes import WriteChecks
from sovereign.agent._fix_search import FIX
from sovereign.agent.answer_column import number_for_name
from sovereign.agent.answer_items import final_in_loop, first_item_only, list_count
from sovereign.agent.answer_shape import missing_kind, retyped_value, undefined_in_named_file, unnamed_choice
from sovereign.agent.code_mode import CODE
from sovereign.agent.errors import NoValidActionError
from sovereign.agent.fix_check import asks_for_a_fix
from sovereign.agent.prompts import fence, prompt
from sovereign.agent.record_scope import off_record, record_about
from sovereign.agent.row_pick import positional_pick
from sovereign.agent.steps import CodeStep, ModelCallStep, NoticeStep, Step, TaskStep, ToolResultStep
from sovereign.governance.injection import withhold_injections
from sovereign.kernel.messages import ToolCall
from sovereign.kernel.tool_calls import parse_tool_calls

if TYPE_CHECKING:
    from sovereign.agent.agent import Agent

__all__ = ["INVALID_CALL", "Accepting", "Invalid", "corrections_since_progress"]

MODEL, VERIFY = "model", "verify"
_GROUNDING_NUDGES = 2
"""Answers sent back for not reading a file the task names; after that an answer is taken."""
_READERS = frozenset({"read_file", "search_files"})
_IGNORED_MARK = "from the task, yet the data has it"
"""A phrase of the ``correct_ignored_code`` notice: that question is asked once per run."""
_BLANK_MARK = "already ended with a line break, so what you added"
"""A phrase of the ``correct_blank_line`` notices (asked once per run)."""
_FIRST_ITEM_MARK = "counts only one element of each"
"""A phrase of the ``correct_first_item`` notices (asked once per run)."""
_ROW_PICK_MARK = "comes from a row picked by its position"
"""A phrase of the ``correct_row_pick_code`` notice (asked once per run)."""
_RETYPED_MARK = "do not retype values from memory"
"""A phrase of the ``correct_retyped_value_code`` notice (asked once per run)."""
_OFF_RECORD_MARK = "that is not about"
"""A phrase of the ``correct_off_record_code`` notice (asked once per run)."""
_NEGATIVE_MARK = "is never negative"
"""A phrase of the ``correct_negative_code`` notice (asked once per run)."""
_ONE_FILE_MARK = "but the task asks about the files"
"""A phrase of the ``correct_one_file_code`` notice (asked once per run)."""
_LINE_RANGE_MARK = "is not one of its line numbers"
"""A phrase of the ``correct_line_range_code`` notice (asked once per run)."""
_LIST_COUNT_MARK = "item lines ("
"""A phrase of the ``correct_list_count_code`` notice (asked once per run)."""
_NUMBER_FOR_NAME_MARK = "which answers with the"
"""A phrase of the ``correct_number_for_name_code`` notice (asked once per run)."""
_CONVERSION_MARK = "and the data already gives it in"
"""A phrase of the ``correct_needless_conversion_code`` notice (asked once per run)."""
_IN_LOOP_MARK = "the loop stopped at its first turn"
"""A phrase of the ``correct_final_in_loop_code`` notice (asked once per run)."""
_UNGROUNDED_MARK = "nothing you ran computed or printed"
"""A phrase of the ``correct_ungrounded_code`` notice (asked once per run; its line-number form
is only ever a run's first question, so the grounding count keeps it from coming twice)."""
_UNORDERED_MARK = "set() loses the order"
"""A phrase of the ``correct_unordered_code`` notice (asked once per run)."""


_CAPPED, _ALWAYS, _FIRST = "capped", "always", "first"
"""When an answer check runs: while the run has grounding questions left, always (the check asks
once per run by its own mark), or only as a run's first question."""
_ANSWER_CHECKS: tuple[tuple[str, str], ...] = (
    ("unread_notice", _CAPPED),
    ("final_in_loop_notice", _ALWAYS),
    ("unwritten_answer_notice", _CAPPED),
    ("unchanged_write_notice", _CAPPED),
    ("added_line_notice", _ALWAYS),
    ("dropped_lines_notice", _CAPPED),
    ("missing_items_notice", _CAPPED),
    ("wrong_file_notice", _CAPPED),
    ("broken_write_notice", _CAPPED),
    ("blank_line_notice", _ALWAYS),
    ("void_notice", _CAPPED),
    ("denied_notice", _CAPPED),
    ("ignored_value_notice", _CAPPED),
    ("row_pick_notice", _CAPPED),
    ("off_record_notice", _CAPPED),
    ("first_item_notice", _CAPPED),
    ("list_count_notice", _ALWAYS),
    ("number_for_name_notice", _CAPPED),
    ("conversion_notice", _CAPPED),
    ("one_file_notice", _CAPPED),
    ("kind_notice", _CAPPED),
    ("undefined_notice", _CAPPED),
    ("retyped_notice", _CAPPED),
    ("negative_notice", _ALWAYS),
    ("line_range_notice", _ALWAYS),
    ("guessed_notice", _FIRST),
    ("unnamed_choice_notice", _CAPPED),
    ("unordered_notice", _CAPPED),
)
"""The checks an answer passes, in order: each names a method that returns the notice sending
the model back, or None; the first notice found is sent and counts as a grounding question."""


INVALID_CALL = "invalid call"
"""The ``error`` of a refused call that was invalid (unknown tool, bad arguments)."""


class Invalid(str):
    """A refusal because the call itself is invalid (unknown tool, bad arguments)."""


class Accepting(WriteChecks):
    """Answer acceptance and corrections (uses the session's fields and methods)."""

    if TYPE_CHECKING:
        agent: Agent
        runner: Any
        steps: list[Step]
        detector: Any
        answer: str | None
        answer_note: str
        invalid_actions: int
        grounding_nudges: int
        _tool_specs: list
        def stage(self, step: Step) -> None: ...
        def task_step(self) -> TaskStep: ...
        def arguments_of(self, call_id: str) -> str: ...
        def fix_goal_due(self) -> Any: ...
        held_answer: str | None

    def recover_calls(self, content: str) -> tuple[str | None, list[ToolCall]]:
        """Calls a model wrote as text (``<tool_call>`` markup, a bare JSON call), when every one
        names an offered tool: they are run like any other call."""
        if call_markup(content) is None:
            return content, []
        rest, calls = parse_tool_calls(content, self._tool_specs)
        return (rest, calls) if calls else (content, [])

    def consider_answer(self, text: str | None) -> str:
        """Take ``text`` as the answer (→ VERIFY), or send the model back with a correction: an
        empty reply, tool-call syntax written as text, files the task names left unread."""
        text = (text or "").strip()
        if not text and self.agent.mode == "code" and isinstance(self.steps[-1], CodeStep) \
                and self.steps[-1].final is not None and self.grounding_nudges < _GROUNDING_NUDGES:
            self.grounding_nudges += 1  # final_answer("") from code: what the code picked is empty
            self.stage(NoticeStep(text=prompt("correct_void_code").format(answer="an empty text"), reason="grounding"))
            return MODEL
        if not text:
            return self.correct("empty replies", prompt(f"correct_empty_{self.agent.mode}"))
        markup = call_markup(text)
        if markup is not None:
            return self.correct("tool-call syntax written as the answer", prompt(f"correct_markup_{self.agent.mode}").format(
                what=markup, tools=self.usage()))
        applied = self.apply_fix_turn()
        if applied is not None:
            self.stage(applied)
            return CODE
        unrun = self.unrun_write_block()
        if unrun is not None:
            self.stage(NoticeStep(text=unrun, reason="grounding"))
            return MODEL
        if self.fix_goal_due() is not None:  # a fix task: the fix search first, if the file fails its check
            self.held_answer = text
            return FIX
        for check, gate in _ANSWER_CHECKS:
            if gate == _CAPPED and self.grounding_nudges >= _GROUNDING_NUDGES or gate == _FIRST and self.grounding_nudges:
                continue
            notice = getattr(self, check)(text)
            if notice is not None:
                self.grounding_nudges += 1
                self.stage(NoticeStep(text=notice, reason="grounding"))
                return MODEL
        unread = self.unread_files()
        self.answer_note = f" (not read: {', '.join(unread)})" if unread else ""
        self.answer = text
        self.detector.record_text(text)
        return VERIFY

    def unread_notice(self, answer: str) -> str | None:
        unread = self.unread_files()
        return prompt(f"correct_unread_{self.agent.mode}").format(files=", ".join(unread), first=unread[0]) \
            if unread else None

    def unwritten_answer_notice(self, answer: str) -> str | None:
        return self.unwritten_notice() if self.left_unwritten() else None

    def wrong_file_notice(self, answer: str) -> str | None:
        missed = self.missed_target()
        if missed is None:
            return None
        target, written = missed
        return prompt(f"correct_wrong_file_{self.agent.mode}").format(target=target, written=", ".join(written))

    def broken_write_notice(self, answer: str) -> str | None:
        broken = broken_writes(self.steps)
        if not broken:
            return None
        name, problem = broken[0]
        holder = self.text_holder(name) if self.agent.mode == "code" else None
        if holder is not None:
            return prompt("correct_broken_read_code").format(file=name, problem=problem, holder=holder, path=repr(name))
        return prompt(f"correct_broken_{self.agent.mode}").format(file=name, problem=problem)

    def blank_line_notice(self, answer: str) -> str | None:
        blank = [] if self.asked(_BLANK_MARK) else blank_line_writes(self.steps)
        if not blank:
            return None
        name, line = blank[0]
        return prompt(f"correct_blank_line_{self.agent.mode}").format(
            file=name, path=repr(name), line=line, index=line - 1, answer=repr(answer[:200]))

    def void_notice(self, answer: str) -> str | None:
        void = void_answer(answer)
        if not (void or non_answer(answer) and self._can_look()):
            return None
        name = "correct_void" if void else "correct_non_answer"
        return prompt(f"{name}_{self.agent.mode}").format(answer=answer[:80])

    def denied_notice(self, answer: str) -> str | None:
        seen = denied_but_seen(answer, self.task_step().task, material_read(self.steps))
        return self.absent_notice(answer, *seen) if seen is not None else None

    def ignored_value_notice(self, answer: str) -> str | None:
        ignored = self.ignored_term(answer)
        return self.ignored_notice(answer, ignored) if ignored is not None else None

    def list_count_notice(self, answer: str) -> str | None:
        if self.agent.mode != "code" or self.asked(_LIST_COUNT_MARK):
            return None
        counted = list_count(self.task_step().task, answer, self.files_read())
        if counted is None:
            return None
        shown = ", ".join(repr(item) for item in counted.items[:4]) + (", ..." if len(counted.items) > 4 else "")
        return prompt("correct_list_count_code").format(
            answer=answer[:80], file=counted.path, count=len(counted.items), shown=shown, path=repr(counted.path))

    def kind_notice(self, answer: str) -> str | None:
        kind = missing_kind(self.task_step().task, answer)
        return self.missing_kind_notice(answer, *kind) if kind is not None else None

    def undefined_notice(self, answer: str) -> str | None:
        undefined = undefined_in_named_file(self.task_step().task, answer, dict(self.files_read()))
        if undefined is None:
            return None
        file, name = undefined
        return prompt(f"correct_not_defined_{self.agent.mode}").format(
            file=file, name=name, pattern=repr(rf"^\s*(def|class)\s+{name}\b"))

    def negative_notice(self, answer: str) -> str | None:
        if self.agent.mode != "code" or self.asked(_NEGATIVE_MARK):
            return None
        positive = negative_count(self.task_step().task, answer)
        return prompt("correct_negative_code").format(answer=answer, positive=repr(positive)) \
            if positive is not None else None

    def line_range_notice(self, answer: str) -> str | None:
        if self.agent.mode != "code" or self.asked(_LINE_RANGE_MARK):
            return None
        past = line_out_of_range(self.task_step().task, answer, self.files_read())
        if past is None:
            return None
        value, file, count = past
        return prompt("correct_line_range_code").format(value=value, file=file, count=count, path=repr(file))

    def unnamed_choice_notice(self, answer: str) -> str | None:
        options = unnamed_choice(self.task_step().task, answer)
        if not options:
            return None
        if self.agent.mode == "code" and len(options) == 2 and answer in ("True", "False"):
            return prompt("correct_boolean_choice_code").format(
                answer=answer, first=options[0], second=options[1], first_repr=repr(options[0]),
                second_repr=repr(options[1]))
        return prompt(f"correct_unnamed_choice_{self.agent.mode}").format(answer=answer[:80], options=" or ".join(options))

    def unordered_notice(self, answer: str) -> str | None:
        reordered = self.order_kept()
        return prompt("correct_unordered_code").format(block=reordered) if reordered is not None else None

    def order_kept(self) -> str | None:
        """Code mode: when the task asks to keep the order and a block lost it with ``set()``,
        that block and the ones after it (which may write its result) as one block with
        ``dict.fromkeys`` instead — asked about once per run."""
        if self.agent.mode != "code" or self.asked(_UNORDERED_MARK):
            return None
        task = self.task_step().task
        blocks = [b.code for b in self.model_blocks()]
        lost = next((at for at in range(len(blocks) - 1, -1, -1) if ordered_dedupe(task, blocks[at]) is not None), None)
        if lost is None:
            return None
        return ordered_dedupe(task, replay_code(blocks[lost:], material_read(self.steps)))

    def retyped_notice(self, answer: str) -> str | None:
        """Code mode: a reply in prose (or a block answering with typed text only) after the
        model's block answered a number, stating another number in its place — the block that
        answers with the computed one, once per run."""
        if self.agent.mode != "code" or self.asked(_RETYPED_MARK):
            return None
        notices = [s for s in self.steps if isinstance(s, NoticeStep)]
        if notices and _NEGATIVE_MARK in notices[-1].text:  # the typed answer is the block that notice gave
            return None
        blocks = [b for b in self.model_blocks() if b.final is not None]
        if isinstance(self.steps[-1], ModelCallStep):  # prose after a block that answered
            block = blocks[-1] if blocks else None
        else:  # a block answering with typed text only, after one that computed
            block = blocks[-2] if len(blocks) >= 2 and _typed_answer(blocks[-1].code) else None
        if block is None or block.final is None:
            return None
        retyped = retyped_value(answer, block.final.strip())
        if retyped is None:
            return None
        fixed, wrong = retyped
        return prompt("correct_retyped_value_code").format(value=block.final.strip(), wrong=wrong, answer=repr(fixed))

    def guessed_notice(self, answer: str) -> str | None:
        """Code mode, a task that asks a question (not for a file to be written or fixed): when
        ``answer`` states a number, date or weekday that nothing the run read or computed holds,
        the notice asking for it to be computed (a guessed line number: the block printing the
        numbered lines of the file read) — asked once per run, of an answer no other question
        came before (an answer to a question is the model's second look)."""
        task = self.task_step().task
        if self.agent.mode != "code" or self.asked(_UNGROUNDED_MARK) or asks_for_a_write(task) \
                or asks_for_a_fix(task):
            return None
        computed = [b.final for b in self.model_blocks() if b.final is not None and computed_final(b.code)]
        guessed = ungrounded_value(task, answer, [*material_read(self.steps), *computed])
        if guessed is None:
            return None
        read = next((path for path, _ in self.files_read()), None)
        if read is not None and guessed.isdigit() and asks_for_a_line(task):
            return prompt("correct_ungrounded_lines_code").format(value=guessed, file=read, path=repr(read))
        return prompt("correct_ungrounded_code").format(value=guessed, how=how_to_compute(guessed))

    def asked(self, mark: str) -> bool:
        """Whether a notice holding ``mark`` (a phrase of one question) was sent in this run."""
        return any(isinstance(s, NoticeStep) and mark in s.text for s in self.steps)

    def answering_code(self, mark: str) -> tuple[str, list[str]] | None:
        """Code mode: the model's block that gave the answer, replayed without its pasted file
        text, and the material the run read — unless a notice holding ``mark`` was sent already
        (each such question is asked once per run)."""
        block = self.last_block()
        if self.agent.mode != "code" or block is None or block.final is None or self.asked(mark):
            return None
        material = material_read(self.steps)
        return replay_code([block.code], material), material

    def row_pick_notice(self, answer: str) -> str | None:
        """Code mode: when the block that answered picked a row by its position and the value the
        task names is on another row, the notice with that block picking the row by the value."""
        answering = self.answering_code(_ROW_PICK_MARK)
        found = positional_pick(self.task_step().task, *answering) if answering is not None else None
        if found is None:
            return None
        return prompt("correct_row_pick_code").format(answer=answer[:80], picked=found.picked, term=found.term,
                                                      line=found.line, block=found.block)

    def off_record_notice(self, answer: str) -> str | None:
        """Code mode: when the answer sits only in parts of a file read other than the one part
        holding the record the task names ("version 2.1"), that part, once per run."""
        if self.agent.mode != "code" or self.asked(_OFF_RECORD_MARK):
            return None
        found = off_record(self.task_step().task, answer, self.files_read())
        if found is None:
            return None
        record = withhold_injections(found.record)
        return prompt("correct_off_record_code").format(answer=answer.strip()[:80], file=found.path, key=found.key,
                                                        record=record, fence=fence(record))

    def first_item_notice(self, answer: str) -> str | None:
        """Code mode: when the block that answered an aggregate took one element of lists that
        hold several (``order["items"][0]``), the notice with that block walking every element —
        asked once per run."""
        answering = self.answering_code(_FIRST_ITEM_MARK)
        found = first_item_only(self.task_step().task, *answering) if answering is not None else None
        if found is None:
            return None
        fields = dict(answer=answer[:80], key=found.key, expression=found.expression, longest=found.longest)
        if found.block is None:
            return prompt("correct_first_item_words_code").format(**fields)
        return prompt("correct_first_item_code").format(block=found.block, **fields)

    def final_in_loop_notice(self, answer: str) -> str | None:
        """Code mode: the block that answered called final_answer inside a loop (the answer is the
        first turn's) — asked once per run, beyond the grounding questions' count (nothing else
        can be judged of an answer cut short)."""
        block = self.last_block()
        if self.agent.mode != "code" or block is None or block.final is None or self.asked(_IN_LOOP_MARK) \
                or not final_in_loop(block.code):
            return None
        target = self.file_to_write() if self.left_unwritten() else None
        write = (f" The task also asks you to write {target}: after the loop, save what you collected with "
                 f"write_file({target!r}, text), then call final_answer with a short confirmation.") if target else ""
        return prompt("correct_final_in_loop_code").format(answer=repr(answer[:80]), write=write)

    def number_for_name_notice(self, answer: str) -> str | None:
        """Code mode: a "which <noun>" (or who) task answered with the number that picks the row
        of a table read, not the row's noun — once per run."""
        if self.agent.mode != "code" or self.asked(_NUMBER_FOR_NAME_MARK):
            return None
        found = number_for_name(self.task_step().task, answer, self.files_read())
        if found is None:
            return None
        number = answer.strip().rstrip(".")
        which = "who" if found.noun == "who" else f"which {found.noun}"
        return prompt("correct_number_for_name_code").format(
            which=which, answer=number, by=found.by, file=found.path, column=found.column, path=repr(found.path),
            by_key=repr(found.by), number=number, column_key=repr(found.column))

    def conversion_notice(self, answer: str) -> str | None:
        """Code mode: the block that answered converted a value out of the unit the task asks
        for, which the data already had — once per run."""
        answering = self.answering_code(_CONVERSION_MARK)
        found = needless_conversion(self.task_step().task, answering[0], answering[1]) if answering else None
        if found is None:
            return None
        return prompt("correct_needless_conversion_code").format(unit=found.unit, field=found.field,
                                                                 factor=found.factor, answer=repr(answer[:80]))

    def one_file_notice(self, answer: str) -> str | None:
        """Code mode: when the block that answered a question about files used one of the
        several files the run read, the files it left out — once per run."""
        block = self.last_block()
        if self.agent.mode != "code" or block is None or block.final is None or self.asked(_ONE_FILE_MARK):
            return None
        read = list(dict.fromkeys(path for path, _ in self.files_read()))
        found = one_file_only(self.task_step().task, block.code, read)
        if found is None:
            return None
        if found.holder is not None:
            how = (f"{found.holder} holds the text of each of them by path: go through every one, for example "
                   f"`for path, text in {found.holder}.items():`.")
        else:
            how = f"Go through every one, for example `for path in {read!r}:` with `text = read_file(path)`."
        return prompt("correct_one_file_code").format(answer=repr(answer[:80]), path=found.path, count=len(read),
                                                      files=", ".join(read), how=how)

    def missing_kind_notice(self, answer: str, kind: str, finder: str | None) -> str:
        """The answer holds no value of the kind asked for. In code mode, when the run read
        files and the kind has a ``finder`` pattern, the notice gives the block that finds every
        such value in them (a small model told to search kept picking a line by its position)."""
        if finder is None:  # a computed number: searching the text will not find it
            return prompt(f"correct_missing_number_{self.agent.mode}").format(answer=answer[:80], kind=kind)
        text = prompt(f"correct_missing_kind_{self.agent.mode}").format(answer=answer[:80], kind=kind)
        paths = list(dict.fromkeys(path for path, _ in self.files_read())) if self.agent.mode == "code" else []
        if not paths:
            return text
        block = (f"found = re.findall({finder!r}, '\\n'.join(read_file(path) for path in {paths!r}))\n"
                 "print(found)")
        plain = kind.split(" ", 1)[1] if kind.startswith(("a ", "an ")) else kind
        return text + "\n" + prompt("find_kind_code").format(kind=plain, block=block)

    def files_read(self) -> Iterator[tuple[str, str]]:
        """``(path, text)`` of every successful ``read_file`` call of this run, in order."""
        for step in self.steps:
            if isinstance(step, ToolResultStep) and step.name == "read_file" and step.ok:
                try:
                    path = json.loads(self.arguments_of(step.call_id)).get("path")
                except (ValueError, AttributeError):
                    continue
                if isinstance(path, str) and path:
                    yield path, step.content

    def model_blocks(self) -> list[CodeStep]:
        """The runs of the blocks the model wrote (not the runtime's opening), in order."""
        return [s for s in self.steps if isinstance(s, CodeStep) and not s.opening]

    def last_block(self) -> CodeStep | None:
        """The run of the last block the model wrote."""
        return next((s for s in reversed(self.steps) if isinstance(s, CodeStep) and not s.opening), None)

    def ignored_term(self, answer: str) -> IgnoredValue | None:
        """Code mode: a value the task names that the data read holds as a cell but no block the
        agent ran (nor its answer) uses — asked about once per run."""
        if self.agent.mode != "code" or self.asked(_IGNORED_MARK):
            return None
        code = "\n".join(b.code for b in self.model_blocks())
        return ignored_value(self.task_step().task, material_read(self.steps), code, answer)

    def absent_notice(self, answer: str, term: str, line: str) -> str:
        """The answer says ``term`` is not there, yet ``line`` of what was read has it. In code
        mode, the part of a file read that alone holds a word the task names (the record it asks
        about), or, when there is none, the block that prints every line with the term (a small
        model keeps rewriting the same wrong pattern otherwise)."""
        about = record_about(self.task_step().task, self.files_read()) if self.agent.mode == "code" else None
        if about is not None:
            record = withhold_injections(about.record)
            return prompt("correct_absent_record_code").format(answer=answer[:80], file=about.path, key=about.key,
                                                               record=record, fence=fence(record))
        text = prompt(f"correct_absent_{self.agent.mode}").format(answer=answer[:80], term=term, line=line)
        source = self.file_showing(line) if self.agent.mode == "code" else None
        if source is None:
            return text
        block = f"lines = [line for line in read_file({source!r}).splitlines() if {term!r} in line]\nprint(lines)"
        return text + "\n" + prompt("show_lines_code").format(file=source, term=term, block=block)

    def file_showing(self, line: str) -> str | None:
        """The workspace file whose ``read_file`` result holds ``line``, if one does."""
        return next((path for path, text in self.files_read() if line in text), None)

    def ignored_notice(self, answer: str, ignored: IgnoredValue) -> str:
        """The question about a value the answer ignored: with the model's own last block and the
        line that keeps only the items holding it, when that can be placed (small models told in
        prose add the filter to the sum and still divide by every row), else in words."""
        block = self.last_block()
        fixed = filtered_block(block.code, ignored, material_read(self.steps)) if block is not None else None
        if fixed is not None:
            return prompt("correct_ignored_block_code").format(answer=answer[:80], term=ignored.term,
                                                               line=ignored.line, block=fixed)
        keep = (f'rows = [row for row in rows if row["{ignored.column}"] == "{ignored.term}"]'
                if ignored.column else f'keep only the items with "{ignored.term}"')
        return prompt("correct_ignored_code").format(answer=answer[:80], term=ignored.term, line=ignored.line,
                                                     keep=keep)

    def correct(self, problem: str, text: str | None) -> str:
        """Count an invalid action and send ``text`` back (when given: refused calls carry their
        own); past ``max_corrections`` in a row the run fails."""
        self.invalid_actions += 1
        if self.invalid_actions > self.agent.max_corrections:
            raise NoValidActionError(f"{problem} (after {self.agent.max_corrections} corrections)")
        if text is not None:
            self.stage(NoticeStep(text=text, reason="correction"))
        return MODEL

    def usage(self) -> str:
        """The offered tools with their argument names, for corrections."""
        return usage_of(self._tool_specs)

    def unread_files(self) -> list[str]:
        """Workspace files the task names that no tool call has touched (when the agent can read)."""
        if not any(t.name in _READERS for t in self.agent.tools):
            return []
        return unread_paths(self.task_step().task, self.workspace_root(), touched_arguments(self.steps))

    def _can_look(self) -> bool:
        return self.workspace_root() is not None and any(t.name in _READERS for t in self.agent.tools)

    def workspace_root(self) -> Path | None:
        if self.runner.workspace is not None:
            return self.runner.workspace
        services = self.runner.services
        return services.settings.home / "workspace" if services is not None else None



def _typed_answer(code: str) -> bool:
    """Whether ``code`` only answers with a string it typed (``final_answer("... 1000.")``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return len(tree.body) == 1 and isinstance(tree.body[0], ast.Expr) and isinstance(tree.body[0].value, ast.Call) \
        and len(tree.body[0].value.args) == 1 and isinstance(tree.body[0].value.args[0], ast.Constant) \
        and isinstance(tree.body[0].value.args[0].value, str)


def corrections_since_progress(steps: list[Step]) -> tuple[int, int]:
    """For a resumed run: invalid actions since the last executed tool call or code run
    (correction notices, turns whose calls were all invalid), and grounding corrections sent."""
    invalid = 0
    refused: set[str] = set()
    for step in reversed(steps):
        if isinstance(step, ToolResultStep) and step.executed and not step.in_code or isinstance(step, CodeStep):
            break
        if isinstance(step, NoticeStep) and step.reason == "correction":
            invalid += 1
        elif isinstance(step, ToolResultStep) and step.error == INVALID_CALL:
            refused.add(step.call_id)
        elif isinstance(step, ModelCallStep) and step.tool_calls and all(c.id in refused for c in step.tool_calls):
            invalid += 1
    grounding = sum(1 for s in steps if isinstance(s, NoticeStep) and s.reason == "grounding")
    return invalid, grounding
