"""Answer acceptance for tasks that ask for a file to be written or fixed (a mixin of ``Session``,
through ``Accepting``): whether the run wrote the file the task names (and not only another),
the notice that shows the block saving what the run points at (the task's "from A to B", the
module with the functions the model's code fixed, the new text a block built, the value it
answered), a reply claiming a write that never ran, a fix shown as its save block and reported
done without running it (saved by the runtime's own turn), and where the text of a file the code
read before writing it is held (for a write that broke the file); and writes that missed what the
task asks: items it lists, the one line it adds (or where), lines of the file it dropped, a file
saved back unchanged.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sovereign.agent.answer_check import (
    answer_expression,
    asks_for_a_write,
    in_workspace,
    mentioned_paths,
    write_target,
    written_paths,
)
from sovereign.agent.answer_shape import edited_text_variable, listed_items, patched_module, replacement, swap_line
from sovereign.agent.code_mode import extract_code
from sovereign.agent.added_line import added_line
from sovereign.agent.fix_check import WRONG_LINE_MARK, asks_for_a_fix, fix_check, function_to_fix
from sovereign.agent.prompts import fence, prompt
from sovereign.agent.steps import APPLY_MODEL, CodeStep, ModelCallStep, NoticeStep, Step, TaskStep, ToolResultStep
from sovereign.governance.injection import withhold_injections

if TYPE_CHECKING:
    from sovereign.agent.agent import Agent

__all__ = ["SAVE_MODULE_MARK", "WriteChecks"]

SAVE_MODULE_MARK = "it saves the fixed module"
"""A phrase of the ``correct_unwritten_module_code`` notice (shown at once after a block that
defined a fix, once per run)."""
_ITEMS_MARK = "but what you wrote does not hold"
"""A phrase of the ``correct_missing_items_code`` notice (asked once per run)."""
_DROPPED_MARK = "but your write dropped lines it had"
"""A phrase of the ``correct_dropped_lines_code`` notice (asked once per run)."""
_ADDS = re.compile(r"\b(?:add|append|insert)\b(?!\s*\()", re.IGNORECASE)  # the verb, not add(2, 3)
_REMOVES = re.compile(r"\b(?:remove|delete|drop|replace|sort|rewrite|rename|dedupe|deduplicate|clear|overwrite)\b",
                      re.IGNORECASE)
_UNCHANGED_MARK = "exactly as it was, so the change"
"""A phrase of the ``correct_unchanged_write_code`` notice (asked once per run)."""
_STRUCTURED = frozenset({".json", ".py", ".toml", ".yaml", ".yml", ".xml", ".html", ".ini", ".cfg", ".js", ".ts"})
_ADDED_MARK = "so the line the task asks for is not there"
"""A phrase of the ``correct_added_line_code`` notice (asked once per run)."""
_COMMENT_LINE = (" In Python code a line starting with # is a comment, not text: the line must go into the file as "
                 "a string.")
_UNRUN_MARK = "so the block above never ran"
"""A phrase of the ``correct_unrun_block_code`` notice (asked once per run)."""


class WriteChecks:
    """The write-task checks of answer acceptance (uses the session's fields and methods)."""

    if TYPE_CHECKING:
        agent: Agent
        runner: Any
        steps: list[Step]
        def task_step(self) -> TaskStep: ...
        def asked(self, mark: str) -> bool: ...
        def model_blocks(self) -> list[CodeStep]: ...
        def last_block(self) -> CodeStep | None: ...
        def workspace_root(self) -> Path | None: ...
        def files_read(self) -> Iterator[tuple[str, str]]: ...

    def apply_fix_turn(self) -> ModelCallStep | None:
        """Code mode: the model was shown the block that saves the fix its own code defined and
        answered without running it (a small model reports "fixed" and stops) — the runtime's own
        turn running that block (``APPLY_MODEL``), once per run. The fix is the model's, and the
        block's check runs with it: a wrong fix fails there and the model goes on from the error."""
        if self.agent.mode != "code" or not self.asked(SAVE_MODULE_MARK) or not self.left_unwritten() \
                or any(isinstance(s, ModelCallStep) and s.model == APPLY_MODEL for s in self.steps):
            return None
        file = self.file_to_write()
        existing = self.current_text(file)
        notice = self.fixed_module_notice(file, existing) if existing is not None else None
        block = extract_code(notice) if notice is not None else None
        if block is None:
            return None
        return ModelCallStep(model=APPLY_MODEL, content=f"```python\n{block}\n```")

    def unrun_write_block(self) -> str | None:
        """Code mode: the notice before this reply showed a block that writes the task's file,
        and the reply has no code ("The fixed calc.py has been saved."): the block again, with
        word that nothing ran — once per run, beyond the grounding questions' count (the reply
        claims a write that never happened)."""
        if self.agent.mode != "code" or len(self.steps) < 2 or not isinstance(self.steps[-1], ModelCallStep) \
                or not self.left_unwritten() or self.asked(_UNRUN_MARK):
            return None
        notice = self.steps[-2]
        block = extract_code(notice.text) if isinstance(notice, NoticeStep) else None
        if block is None or "write_file(" not in block:
            return None
        return prompt("correct_unrun_block_code").format(file=self.file_to_write(), block=block)

    def text_holder(self, file: str) -> str | None:
        """The variable the run's code read ``file`` into before any write (``content = read_file(
        'data.csv')``; ``contents['data.csv']`` from the opening's dict of files), or None."""
        for step in self.steps:
            if isinstance(step, ToolResultStep) and step.name == "write_file":
                return None
            if not isinstance(step, CodeStep):
                continue
            try:
                tree = ast.parse(step.code)
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
                    continue
                value, name = node.value, node.targets[0].id
                if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "read_file" \
                        and value.args and isinstance(value.args[0], ast.Constant) and value.args[0].value == file:
                    return name
                if isinstance(value, ast.DictComp) and step.opening and file in step.output:
                    return f"{name}[{file!r}]"
        return None

    def missing_items_notice(self, answer: str) -> str | None:
        """Code mode: the task lists items for a file ("with the items eggs, flour and sugar"), and
        a file the run wrote holds some of them but not all (a slip: "guar") — once per run."""
        task = self.task_step().task
        if self.agent.mode != "code" or not asks_for_a_write(task) or self.asked(_ITEMS_MARK):
            return None
        items = listed_items(task)
        for file in dict.fromkeys(written_paths(self.steps)) if items else ():
            text = self.current_text(file)
            if text is None:
                continue
            missing = [item for item in items
                       if re.search(rf"(?<![\w]){re.escape(item)}(?![\w])", text, re.IGNORECASE) is None]
            if missing and len(missing) < len(items):
                return prompt("correct_missing_items_code").format(
                    items=", ".join(items), file=file, missing=" or ".join(repr(m) for m in missing),
                    text=text[:2000], fence=fence(text))
        return None

    def dropped_lines_notice(self, answer: str) -> str | None:
        """Code mode: a task that adds to a file of lines (and removes or rewrites nothing), and
        the run's write of a file it had read dropped some of that file's lines (a small model
        rewrites a CSV without its header) — once per run. Structured files (JSON, code) and
        one-line files are left alone: adding a key rewrites their lines."""
        task = self.task_step().task
        if self.agent.mode != "code" or not _ADDS.search(task) or _REMOVES.search(task) or asks_for_a_fix(task) \
                or self.asked(_DROPPED_MARK):
            return None
        before = self.first_reads()
        for file in dict.fromkeys(written_paths(self.steps)):
            original, now = before.get(file), self.current_text(file)
            if original is None or now is None or Path(file).suffix.lower() in _STRUCTURED \
                    or len([line for line in original.splitlines() if line.strip()]) < 2:
                continue  # a JSON object or a module is rewritten whole, its lines change: only line lists
            kept = [line.strip() for line in now.splitlines()]
            dropped = [line for line in original.splitlines() if line.strip() and line.strip() not in kept]
            if dropped:
                holder = self.text_holder(file) or f"read_file({file!r})"
                return prompt("correct_dropped_lines_code").format(
                    file=file, dropped=", ".join(repr(line) for line in dropped[:5]), text=now[:2000], fence=fence(now),
                    path=repr(file), holder=holder)
        return None

    def added_line_notice(self, answer: str) -> str | None:
        """Code mode: the task asks to add one line to a file ("Add the line # Title at the top
        of notes.md"), the run wrote that file, and it has no such line now — or not where the
        task puts it: the block that adds it to the text as first read — once per run."""
        task = self.task_step().task
        added = added_line(task) if self.agent.mode == "code" and not self.asked(_ADDED_MARK) else None
        file = self.file_to_write() if added is not None else None
        if added is None or file not in written_paths(self.steps) or file not in self.first_reads():
            return None
        now = [line.strip() for line in (self.current_text(file) or "").splitlines() if line.strip()]
        where = {"top": now[:1], "end": now[-1:], "any": now}[added.position]
        if added.text in where:
            return None
        original = self.first_reads()[file]
        holder = self.text_holder(file) or (repr(original) if len(original) <= 2000 else f"read_file({file!r})")
        place = f"lines.insert(0, {added.text!r})" if added.position == "top" else f"lines.append({added.text!r})"
        return prompt("correct_added_line_code").format(
            file=file, line=repr(added.text), where={"top": " at the top", "end": " at the end"}.get(added.position, ""),
            holder=holder, place=place, path=repr(file), done=repr(f"added {added.text} to {file}"),
            comment=_COMMENT_LINE if added.text.startswith("#") else "")

    def unchanged_write_notice(self, answer: str) -> str | None:
        """Code mode: a task that asks for a change, and every write of a file the run had read
        left it as it was (the file's own text saved back) — once per run."""
        task = self.task_step().task
        if self.agent.mode != "code" or not asks_for_a_write(task) or asks_for_a_fix(task) or self.asked(_UNCHANGED_MARK):
            return None  # a fix has its own check (the call or test the task names)
        before = self.first_reads()
        written = list(dict.fromkeys(written_paths(self.steps)))
        for file in written:
            original, now = before.get(file), self.current_text(file)
            if original is None or now is None or now.strip() != original.strip():
                return None
        if not written or written[0] not in before:
            return None
        holder = self.text_holder(written[0]) or f"read_file({written[0]!r})"
        return prompt("correct_unchanged_write_code").format(file=written[0], holder=holder, path=repr(written[0]))

    def first_reads(self) -> dict[str, str]:
        """Each file the run read, with the text its first read returned (before any write)."""
        before: dict[str, str] = {}
        for path, text in self.files_read():
            before.setdefault(path, text)
        return before

    def left_unwritten(self) -> bool:
        """The task asks for a file to be created or changed, the agent can write, and it never
        tried to (small models often "fix" a bug in their own code and report the result). A
        write that was refused or failed is not asked for again."""
        if not asks_for_a_write(self.task_step().task) or self.agent.tool("write_file") is None:
            return False
        return not any(isinstance(s, ToolResultStep) and s.name == "write_file" for s in self.steps)

    def unwritten_notice(self) -> str:
        """What to say when the task's file was never written. In code mode, when the last block
        answered with a computed value, the notice shows the block that saves that value (small
        models told in prose to write a file answer again instead; a line to copy they run)."""
        file = self.file_to_write()
        block = self.last_block() if self.agent.mode == "code" else None
        if block is not None:
            existing = self.current_text(file)
            swapped = self.swap_notice(file, existing) if existing is not None else None
            if swapped is not None:  # the task says what to change: that, not the value a block answered
                return swapped
            value = answer_expression(block.code) if block.final is not None else None
            if value is not None and _lines_list(block.final):  # the file's new lines, as a list
                value = f"'\\n'.join({value}) + '\\n'"
            # An existing file is replaced by the answered value only when that value is text of
            # several lines (a fixed module's "5" must not become the module).
            if value is not None and (existing is None or "\n" in (block.final or "").strip()
                                      or _lines_list(block.final)):
                return prompt("correct_unwritten_value_code").format(file=file, path=repr(file), value=value)
            if existing is not None:
                shown = self.change_block_notice(file, existing, block)
                if shown is not None:
                    return shown
        return prompt(f"correct_unwritten_{self.agent.mode}").format(file=file)

    def change_block_notice(self, file: str, existing: str, block: CodeStep) -> str | None:
        """Code mode, for an existing ``file`` never written: the notice with the block that saves
        the change the run points at — the task's "from A to B", the module with the functions
        the model's code fixed, or the new text its last block built in a variable."""
        path = repr(file)
        swapped = self.swap_notice(file, existing)
        if swapped is not None:
            return swapped
        existing = withhold_injections(existing)  # file text in a notice is shown as the guard shows it
        saved = self.fixed_module_notice(file, existing)
        if saved is not None:
            return saved
        edited = edited_text_variable(block.code, existing, ignore=(WRONG_LINE_MARK,))
        if edited is not None:
            return prompt("correct_unsaved_text_code").format(file=file, path=path, name=edited)
        if file.endswith(".py") and asks_for_a_fix(self.task_step().task):
            to_fix = function_to_fix(self.task_step().task, existing)
            if to_fix is not None:
                function, stated, source = to_fix
                if stated is None:
                    return prompt("correct_unwritten_function_code").format(file=file, function=function, source=source)
                return prompt("correct_unwritten_call_code").format(
                    file=file, function=function, call=stated.call, expected=stated.expected, source=source)
            lines = "\n".join(f"{n:>3} | {line}" for n, line in enumerate(existing.splitlines()[:60], 1))
            check = fix_check(self.task_step().task, file, self.workspace_root())
            return prompt("correct_unwritten_fix_code").format(file=file, path=path, lines=lines,
                                                               check=f"{check}\n" if check else "")
        return None

    def swap_notice(self, file: str, existing: str) -> str | None:
        """The block saving the task's "from A to B" in ``file`` — on the one line it means when A
        occurs more than once — or None when the task states no such change of text in it."""
        task = self.task_step().task
        swap = replacement(task)
        if swap is None or swap[0] not in existing:
            return None
        old, new = swap
        line = swap_line(task, existing, old)
        if line is not None:
            return prompt("correct_unwritten_replace_line_code").format(
                file=file, path=repr(file), old=repr(old), new=repr(new), index=line)
        return prompt("correct_unwritten_replace_code").format(file=file, path=repr(file), old=repr(old), new=repr(new))

    def fixed_module_notice(self, file: str, existing: str) -> str | None:
        """For a Python ``file`` (its text as shown: ``existing``) that the model's blocks fixed in
        their own code: the notice with the block that saves the module with those definitions
        in place (and runs the check the task implies); None when they redefined none of it."""
        if not file.endswith(".py"):
            return None
        patched = patched_module([b.code for b in self.model_blocks()], existing)
        if patched is None:
            return None
        check = fix_check(self.task_step().task, file, self.workspace_root())
        return prompt("correct_unwritten_module_code").format(
            file=file, path=repr(file), text=repr(patched), check=f"{check}\n" if check else "",
            checks=" and checks it does what the task asks" if check else "")

    def unsaved_fix_notice(self) -> str | None:
        """Code mode, after a block that ran without answering: when the blocks so far defined a
        fix of the module the task asks to change and nothing was saved, the block that saves it
        — at once, once per run (a small model that wrote the fixed function then waits, or
        writes it again, instead of saving it)."""
        if self.agent.mode != "code" or not self.left_unwritten() or self.asked(SAVE_MODULE_MARK):
            return None
        file = self.file_to_write()
        existing = self.current_text(file)
        return self.fixed_module_notice(file, withhold_injections(existing)) if existing is not None else None

    def current_text(self, name: str) -> str | None:
        """The text of workspace file ``name`` as it is now, or None (absent, not text)."""
        root = self.workspace_root()
        if root is None or not in_workspace(root, name):
            return None
        try:
            return (root / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def file_to_write(self) -> str:
        """The file a task asks to be written: the one it says to change, else one it names that
        does not exist yet ("write the total to total.txt"), else the first it names."""
        task = self.task_step().task
        named = mentioned_paths(task)
        root = self.workspace_root()
        new = [n for n in named if root is not None and not in_workspace(root, n)]
        return write_target(task) or (new or named or ["the file"])[0]

    def missed_target(self) -> tuple[str, list[str]] | None:
        """``(target, written)`` when the task says which file to change and the run wrote only
        other files (small models "fix" a failing test by rewriting the test)."""
        target = write_target(self.task_step().task)
        written = written_paths(self.steps)
        if target is None or not written or any(Path(w) == Path(target) for w in written):
            return None
        return target, list(dict.fromkeys(written))


def _lines_list(final: str | None) -> bool:
    """Whether an answer is a list of two or more strings (``['oats', 'rice']``): lines."""
    try:
        value = ast.literal_eval((final or "").strip())
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return False
    return isinstance(value, list) and len(value) >= 2 and all(isinstance(item, str) for item in value)
