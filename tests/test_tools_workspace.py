"""Workspace file tools: list, read, write and search inside the workspace, and no way out of it
(``..``, absolute paths, symlinks to outside files or folders, writes through symlinks)."""

from __future__ import annotations

import asyncio
import os

import pytest

from sovereign.tools import ToolContext, ToolError, builtin_tools
from sovereign.tools.workspace import Workspace, WorkspaceEscapeError


@pytest.fixture
def layout(tmp_path):
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("def main():\n    return 'hello'\n")
    (root / "notes.txt").write_text("TODO: write tests\ndone\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "x.txt").write_text("outside")
    os.symlink(secret, root / "link_to_secret")
    os.symlink(tmp_path / "outside", root / "link_to_outside")
    os.symlink(root / "notes.txt", root / "inner_link")
    return Workspace(root), tmp_path


def call(tools, name, args, ctx=None):
    by_name = {t.name: t for t in tools}
    return asyncio.run(by_name[name].call(args, ctx))


def test_list_read_write_search(layout):
    ws, _ = layout
    tools = builtin_tools(ws)
    listing = call(tools, "list_files", {})
    assert "src/" in listing and "notes.txt" in listing
    assert "src/app.py" in call(tools, "list_files", {"recursive": True})
    assert "return 'hello'" in call(tools, "read_file", {"path": "src/app.py"})
    assert call(tools, "write_file", {"path": "out/new.md", "content": "# hi\n"}).startswith("wrote 5 bytes")
    call(tools, "write_file", {"path": "out/new.md", "content": "more\n", "append": True})
    assert (ws.root / "out" / "new.md").read_text() == "# hi\nmore\n"
    hits = call(tools, "search_files", {"pattern": "TODO"})
    assert hits == "notes.txt:1: TODO: write tests"
    assert "src/app.py:1:" in call(tools, "search_files", {"pattern": r"def \w+", "regex": True, "glob": "*.py"})
    assert call(tools, "search_files", {"pattern": "nothing-like-this"}) == "no matches"


def test_read_is_capped(layout):
    ws, _ = layout
    (ws.root / "big.txt").write_text("x" * 1000)
    text = call(builtin_tools(ws), "read_file", {"path": "big.txt", "max_bytes": 100})
    assert text.startswith("x" * 100) and "truncated at 100 bytes" in text


@pytest.mark.parametrize(
    "path",
    ["../secret.txt", "src/../../secret.txt", "/etc/passwd", "link_to_secret", "link_to_outside/x.txt",
     "link_to_outside"],
)
def test_reads_cannot_leave_the_workspace(layout, path):
    ws, _ = layout
    with pytest.raises(WorkspaceEscapeError, match="outside the workspace"):
        call(builtin_tools(ws), "read_file", {"path": path})


@pytest.mark.parametrize("path", ["../evil.txt", "/tmp/evil.txt", "link_to_secret", "link_to_outside/evil.txt"])
def test_writes_cannot_leave_the_workspace(layout, path):
    ws, tmp = layout
    with pytest.raises(WorkspaceEscapeError):
        call(builtin_tools(ws), "write_file", {"path": path, "content": "pwned"})
    assert (tmp / "secret.txt").read_text() == "top secret"
    assert not (tmp / "evil.txt").exists() and not (tmp / "outside" / "evil.txt").exists()


def test_listing_and_search_do_not_follow_links_out(layout):
    ws, _ = layout
    tools = builtin_tools(ws)
    assert "top secret" not in call(tools, "search_files", {"pattern": "secret"})
    assert "outside" not in call(tools, "search_files", {"pattern": "outside"})
    with pytest.raises(WorkspaceEscapeError):
        call(tools, "list_files", {"path": "link_to_outside"})
    with pytest.raises(WorkspaceEscapeError):
        call(tools, "search_files", {"pattern": "x", "path": ".."})


def test_symlinks_inside_the_workspace_are_fine(layout):
    ws, _ = layout
    assert "TODO" in call(builtin_tools(ws), "read_file", {"path": "inner_link"})


def test_missing_files_are_tool_errors(layout):
    ws, _ = layout
    with pytest.raises(ToolError, match="not a file"):
        call(builtin_tools(ws), "read_file", {"path": "nope.txt"})


def test_run_workspace_from_context_wins(layout, tmp_path):
    ws, _ = layout
    other = tmp_path / "other"
    other.mkdir()
    (other / "only-here.txt").write_text("x")
    listing = call(builtin_tools(ws), "list_files", {}, ToolContext(workspace=other))
    assert listing == "only-here.txt"


# --- regular expressions in linear time (RE2) --------------------------------------------------


def test_catastrophic_pattern_neither_stalls_the_search_nor_the_event_loop(layout):
    """``(a+)+$`` on a 31-byte line takes Python's backtracking ``re`` minutes (2^30 steps, holding
    the GIL, so every other request of the server waits); RE2 answers at once. A ticker on the
    same event loop (a stand-in for the server's other requests) must keep ticking meanwhile."""
    ws, _ = layout
    (ws.root / "evil.txt").write_text("a" * 30 + "!\n" + "a" * 30 + "\n")
    search = {t.name: t for t in builtin_tools(ws)}["search_files"]

    async def both() -> tuple[str, float]:
        gaps: list[float] = []
        done = asyncio.Event()

        async def ticker() -> None:
            loop = asyncio.get_running_loop()
            last = loop.time()
            while not done.is_set():
                await asyncio.sleep(0.01)
                gaps.append(loop.time() - last)
                last = loop.time()

        ticking = asyncio.create_task(ticker())
        try:
            hits = await asyncio.wait_for(search.call({"pattern": "(a+)+$", "regex": True, "glob": "evil.txt"}), 10)
        finally:
            done.set()
            await ticking
        return hits, max(gaps, default=0.0)

    hits, worst_gap = asyncio.run(both())
    assert hits == "evil.txt:2: " + "a" * 30  # the line ending in '!' does not match; the other does
    assert worst_gap < 1.0  # generous: a guard against a stall, not a timing claim


@pytest.mark.parametrize("pattern", [r"(a)\1", r"foo(?=bar)", r"(?<=x)y"])
def test_unsupported_regex_syntax_is_a_clear_tool_error(layout, pattern):
    ws, _ = layout
    with pytest.raises(ToolError, match="RE2 syntax.*no backreferences"):
        call(builtin_tools(ws), "search_files", {"pattern": pattern, "regex": True})


def test_invalid_regex_is_a_tool_error(layout):
    ws, _ = layout
    with pytest.raises(ToolError, match="missing \\]"):
        call(builtin_tools(ws), "search_files", {"pattern": "[abc", "regex": True})


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("src/app.py", "def main():\n  return 1\n    x = 2\n", "IndentationError"),
    ("data.json", '{"a": 1,}', "JSONDecodeError"),
    ("conf.toml", "port = \n", "TOMLDecodeError"),
    ("data.csv", 'N,A,M,E,",",C,I,T,Y\nname,city\n', "ValueError: row 2 has 2 fields but the header line has 9"),
    ("stock.tsv", "item\tunits\ndesk\t6\tspare\n", "ValueError: row 2 has 3 fields"),
])
def test_a_write_that_leaves_a_file_unparseable_says_so(layout, name, text, problem):
    ws, _ = layout
    result = call(builtin_tools(ws), "write_file", {"path": name, "content": text})
    assert result.startswith(f"wrote {len(text)} bytes to {name}; warning: the file does not parse: {problem}")
    assert (ws.root / name).read_text() == text  # written as asked: the agent decides what to do


def test_a_write_that_adds_lines_after_a_stray_blank_line_notes_it(layout):
    """Added text that starts with a line break, after a file that ends with one, leaves an empty
    line between them: the result says which line (appended or rewritten whole)."""
    ws, _ = layout
    tools = builtin_tools(ws)
    (ws.root / "todo.txt").write_text("milk\nbread\n")
    appended = call(tools, "write_file", {"path": "todo.txt", "content": "\nrent", "append": True})
    assert appended == ("appended 5 bytes to todo.txt; note: line 3 is empty: the text before it already ended "
                        "with a line break")
    (ws.root / "todo.txt").write_text("milk\nbread\n")
    rewritten = call(tools, "write_file", {"path": "todo.txt", "content": "milk\nbread\n\nrent\n"})
    assert rewritten.endswith("note: line 3 is empty: the text before it already ended with a line break")
    # no note: an added line of its own, a file that already has empty lines, a fresh file
    (ws.root / "todo.txt").write_text("milk\n")
    assert call(tools, "write_file", {"path": "todo.txt", "content": "rent\n", "append": True}).endswith("todo.txt")
    (ws.root / "notes.md").write_text("# A\n\ntext\n")
    assert call(tools, "write_file", {"path": "notes.md", "content": "\n# B\n", "append": True}).endswith("notes.md")
    assert call(tools, "write_file", {"path": "new.txt", "content": "\nx\n"}).endswith("new.txt")


def test_valid_writes_and_other_kinds_carry_no_warning(layout):
    ws, _ = layout
    tools = builtin_tools(ws)
    assert call(tools, "write_file", {"path": "ok.py", "content": "x = 1\n"}) == "wrote 6 bytes to ok.py"
    assert call(tools, "write_file", {"path": "n.txt", "content": "def (:"}) == "wrote 6 bytes to n.txt"
    table = 'name,city\nana,"lima, peru"\n\nbo,oslo\n'  # quoted commas and blank lines keep the shape
    assert call(tools, "write_file", {"path": "t.csv", "content": table}) == f"wrote {len(table)} bytes to t.csv"
    assert call(tools, "write_file", {"path": "p.csv", "content": "item;price\ntea;2.40\n"}).endswith("p.csv")
    broken = call(tools, "write_file", {"path": "ok.py", "content": "def (:", "append": True})
    assert "does not parse" in broken  # the whole file after the append is checked
