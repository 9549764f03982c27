"""The web console in a real headless browser (Debian's chromium driven by Playwright).

A real server (``create_app`` under uvicorn on loopback, fresh ``SOVEREIGN_HOME``) answers with
the deterministic model double from ``sovereign.testing``; the integration test at the end uses
the real embedded model. Every request the pages make is recorded and must go to loopback, and
every page is saved as a screenshot under ``tests/artifacts/console/`` (the path is printed).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from console_server import NOTE, PRICED, ConsoleServer, chromium_path

ARTIFACTS = Path(__file__).resolve().parent / "artifacts" / "console"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
PAGES = ["chat", "runs", "approvals", "spend", "memory", "knowledge", "audit", "models"]


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.skip("chromium is not installed (`make install` installs Debian's chromium with apt-get)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # chromium refuses root without it
        browser = playwright.chromium.launch(executable_path=path, args=args)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.delenv("SOVEREIGN_API_KEY", raising=False)
    running = ConsoleServer(tmp_path_factory.mktemp("console") / "home").start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def page(browser, server):
    """A fresh browser context (its own session storage); every request it makes is recorded and
    checked to stay on loopback."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()
    outside = [url for url in requests if urlsplit(url).hostname not in LOOPBACK and not url.startswith("data:")]
    assert requests and not outside, f"requests left loopback: {outside}"


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path


def sign_in(page, server: ConsoleServer, key: str | None = None, path: str = "/") -> None:
    page.goto(server.url + path)
    page.fill("#sign-in input[name=key]", key or server.admin_key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#who")


def api(server: ConsoleServer, method: str, path: str, key: str | None = None, **body):
    import httpx

    response = httpx.request(method, server.url + path, json=body or None,
                             headers={"Authorization": f"Bearer {key or server.admin_key}"}, timeout=30)
    assert response.status_code < 300, response.text
    return response.json()


def test_sign_in_and_every_page_renders(page, server):
    page.goto(server.url + "/")
    assert page.is_visible("#sign-in") and not page.is_visible("#main")
    shot(page, "sign-in")
    page.fill("#sign-in input[name=key]", "sk-not-a-real-key-000000000000")
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('key')")
    assert "sovereign.apiKey" not in page.evaluate("Object.keys(sessionStorage)")  # a refused key is not kept
    sign_in(page, server)
    assert page.evaluate("sessionStorage.getItem('sovereign.apiKey')") == server.admin_key
    assert page.evaluate("document.cookie") == "" and page.evaluate("localStorage.length") == 0
    expected = {"chat": "#chat-model option", "runs": "#runs table", "approvals": "#approvals > *",
                "spend": "#spend-today", "memory": "#memory > *", "knowledge": "#kb-documents table",
                "audit": "#audit-verdict", "models": "#models tr.model"}
    for name in PAGES:
        page.goto(f"{server.url}/console/{name}")
        page.wait_for_selector(expected[name], state="attached")
        assert page.is_visible("#main")
        assert page.is_visible(f"#nav a[href='/console/{name}'][aria-current=page]")
        if name == "audit":
            assert "Chain intact" in page.inner_text("#audit-verdict")
        shot(page, name)


def test_first_paint_is_measured(page, server):
    """The Performance API's first paint of ``/`` (the figure of record, with its peer, comes from
    benchmarks/bench_console.py; a timing is reported here, not asserted)."""
    page.goto(server.url + "/")
    paint = page.wait_for_function("""() => {
        const first = performance.getEntriesByType('paint').find(e => e.name === 'first-paint');
        return first ? first.startTime : null }""").json_value()
    print(f"first paint on loopback: {paint:.0f} ms")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "first-paint.json").write_text(json.dumps({"url": "/", "first_paint_ms": paint}))
    assert paint > 0 and page.is_visible("#sign-in")


def test_chat_streams_an_answer_with_folded_thinking(page, server):
    sign_in(page, server)
    page.select_option("#chat-model", PRICED)
    page.check("#chat-thinking")
    page.set_input_files("#chat-files", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                                "buffer": b"the meeting is at noon"}])
    page.fill("#chat-input", "Hello there")
    page.click("#chat-send")
    answer = page.wait_for_selector(".msg.assistant .answer:has-text('streamed to your browser')")
    assert answer.inner_text() == "Hello from the console double, streamed to your browser."
    thinking = page.locator(".msg.assistant details.thinking")
    assert thinking.is_visible() and thinking.get_attribute("open") is None  # folded
    assert "greet them back" in thinking.locator("pre").text_content()
    page.wait_for_selector(".msg.assistant .meta:has-text('out')")
    sent = server.double.requests[-1]
    assert sent.model == PRICED and "the meeting is at noon" in sent.messages[-1].content  # attachment as text
    shot(page, "chat-answered")


def test_chat_with_model_auto_shows_the_route(page, server):
    sign_in(page, server)
    page.wait_for_selector("#chat-model option[value=auto]", state="attached")  # the picker fills after sign-in
    assert page.locator("#chat-model option[value=auto]").count() == 1
    page.select_option("#chat-model", "auto")
    page.select_option("#chat-data-class", "private")
    page.fill("#chat-input", "Hello router")
    page.click("#chat-send")
    meta = page.wait_for_selector(".msg.assistant .meta:has-text('routed to')").inner_text()
    assert "streamed to your browser" in page.inner_text(".msg.assistant .answer")
    routed = meta.split("routed to ")[1].split(":")[0]
    assert server.services.registry.get(routed).is_local  # private data stayed on the machine
    shot(page, "chat-auto")


def test_spend_page_changes_after_a_chat(page, server):
    sign_in(page, server, path="/console/spend")
    before = page.inner_text("#spend-today")
    page.evaluate("""async ([key, model]) => {
        const r = await fetch('/v1/chat/completions', {method: 'POST', headers: {'Authorization': 'Bearer ' + key,
          'Content-Type': 'application/json'}, body: JSON.stringify({model, messages: [{role: 'user', content: 'cost me'}]})});
        if (!r.ok) throw new Error(await r.text()) }""", [server.admin_key, PRICED])
    page.wait_for_function("before => document.querySelector('#spend-today').textContent !== before", arg=before,
                           timeout=15_000)
    assert page.locator(f".spend-model td:has-text('{PRICED}')").count() == 1
    assert page.locator(".spend-owner td:has-text('local-admin')").count() == 1
    assert page.locator("#spend-chart rect").count() >= 1
    shot(page, "spend-changed")


def test_approve_a_pending_tool_call(page, server):
    run = api(server, "POST", "/v1/runs", task="Write the note file.", model=PRICED,
              definition={"name": "writer", "tools": ["write_file"], "read_named_files": False})
    sign_in(page, server, path="/console/approvals")
    card = page.wait_for_selector(f".approval:has(a[href='/console/runs/{run['id']}'])", timeout=15_000)
    shown = json.loads(card.query_selector("pre.args").inner_text())
    assert {name: shown[name] for name in NOTE} == NOTE
    shot(page, "approval-pending")
    card.query_selector("button.approve").click()
    page.wait_for_selector(f".approval:has(a[href='/console/runs/{run['id']}'])", state="detached", timeout=15_000)
    page.goto(f"{server.url}/console/runs/{run['id']}")
    page.wait_for_selector("#trace-status:has-text('finished')", timeout=20_000)
    shot(page, "run-trace")
    assert page.inner_text("#trace-status") == "finished: completed"
    rows = page.locator("#trace tbody tr")
    assert rows.count() >= 5
    assert "wrote 25 bytes to note.txt" in page.inner_text("#trace tr.kind-tool_result")
    model_row = page.locator("#trace tr.kind-model_call").first.inner_text()
    assert re.search(r"\d+ ms\s+\d+ / \d+\s+\$0\.\d+", model_row), model_row  # time, tokens, cost
    page.wait_for_selector("#run-status:has-text('completed')")


def test_a_viewer_sees_no_approve_button_and_no_admin_pages(page, server):
    viewer = api(server, "POST", "/v1/identities", name="vera", role="viewer")
    key = api(server, "POST", "/v1/keys", identity="vera", name="console")["key"]
    from sovereign.tools.approvals import ApprovalQueue

    ApprovalQueue(server.services.db).request("run_for_vera", "write_file", {"path": "x"}, owner=viewer["id"])
    sign_in(page, server, key=key, path="/console/approvals")
    page.wait_for_selector(".approval")
    assert page.locator(".approval button.approve").count() == 0
    assert page.locator("#nav a[href='/console/audit']").count() == 0
    assert page.locator("#nav a[href='/console/chat']").count() == 0
    assert "viewer" in page.inner_text("#who")
    page.goto(server.url + "/console/runs")
    page.wait_for_selector("#runs table")
    assert not page.is_visible("#run-form")
    page.goto(server.url + "/")
    page.wait_for_selector(".viewer-note")
    assert not page.is_visible("#chat-form")
    shot(page, "viewer-approvals")


def test_memory_and_knowledge_pages_act_through_the_api(page, server):
    sign_in(page, server, path="/console/memory")
    page.fill("#memory-add input[name=content]", "The deploy window is Tuesday")
    page.click("#memory-add button[type=submit]")
    item = page.wait_for_selector(".memory:has-text('deploy window is Tuesday')")
    item.query_selector("details.edit summary").click()
    item.query_selector("textarea").fill("The deploy window is Thursday")
    item.query_selector("form button[type=submit]").click()
    edited = page.wait_for_selector(".memory:has-text('deploy window is Thursday')")
    edited.query_selector("button:has-text('history')").click()
    page.wait_for_selector(".history li:has-text('Tuesday')")
    shot(page, "memory-history")
    page.once("dialog", lambda dialog: dialog.accept())  # "Forget this memory and its history?"
    page.click(".memory:has-text('deploy window is Thursday') button.forget")
    page.wait_for_selector(".memory:has-text('deploy window')", state="detached")
    assert api(server, "GET", "/v1/memory?history=true")["data"] == []
    page.goto(server.url + "/console/knowledge")
    page.set_input_files("#kb-files", files=[{"name": "ports.md", "mimeType": "text/markdown",
                                              "buffer": b"# Ports\nThe API listens on port 8321.\n"}])
    page.click("#kb-ingest button[type=submit]")
    page.wait_for_selector("#kb-ingest-result:has-text('ports.md: added')")
    page.wait_for_selector("#kb-documents td:has-text('ports.md')")
    page.fill("#kb-search input[name=q]", "which port does the API listen on")
    page.click("#kb-search button[type=submit]")
    page.wait_for_selector(".hit .cite:has-text('ports.md § Ports')")
    shot(page, "knowledge-search")


def test_a_swarm_run_shows_its_tree_and_critical_path(browser, tmp_path, monkeypatch):
    from sovereign.agent import Runner
    from sovereign.testing.swarm import SwarmScriptModel

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    swarm_server = ConsoleServer(tmp_path / "home")
    swarm_server.app.state.agent_runner = Runner(swarm_server.services,
                                                 model=SwarmScriptModel(tool="calculator", arg="expression"))
    swarm_server.start()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        run = api(swarm_server, "POST", "/v1/runs", task="Compute these:\n- calc 2+3\n- calc 4*5", wait=True,
                  definition={"name": "boss", "tools": ["calculator"], "mode": "tools"}, swarm={"max_agents": 4})
        page = context.new_page()
        sign_in(page, swarm_server, path=f"/console/runs/{run['id']}")
        page.wait_for_selector("#trace-status:has-text('finished: completed')")
        nodes = page.locator("table.swarm tr.node")
        assert nodes.count() == 2 and "completed" in nodes.first.inner_text()
        critical = page.inner_text("#critical-path")
        chain = run["swarm"]["critical_path"]["critical_path"]
        assert chain and " → ".join(chain) in critical and "speed-up" in critical
        assert page.locator("table.swarm tr.critical").count() == len(chain)
        shot(page, "swarm-tree")
    finally:
        context.close()
        swarm_server.stop()
    assert all(urlsplit(url).hostname in LOOPBACK for url in requests)


@pytest.mark.integration
def test_chat_with_the_real_embedded_model(browser, tmp_path, monkeypatch, embedded_model):
    from sovereign.config import DEFAULT_MODEL

    monkeypatch.delenv("SOVEREIGN_API_KEY", raising=False)
    real = ConsoleServer(tmp_path / "home")
    real.services.models[DEFAULT_MODEL] = embedded_model
    real.start()
    context = browser.new_context()
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    try:
        page = context.new_page()
        sign_in(page, real)
        page.select_option("#chat-model", DEFAULT_MODEL)
        page.evaluate("""() => { window.answerUpdates = 0;
            new MutationObserver(records => { window.answerUpdates += records.filter(
                r => r.target.classList && r.target.classList.contains('answer')).length })
              .observe(document.querySelector('#chat-log'), {subtree: true, childList: true}) }""")
        page.fill("#chat-input", "What is 2 + 2? Answer, then count from one to ten in words.")  # long enough to stream
        page.click("#chat-send")
        page.wait_for_selector(".msg.assistant .meta:has-text('out')", timeout=120_000)
        answer = page.inner_text(".msg.assistant .answer")
        assert answer.strip() and "4" in answer
        assert page.evaluate("window.answerUpdates") >= 2  # the answer arrived in pieces: streamed
        shot(page, "chat-real-model")
    finally:
        context.close()
        real.services.models.pop(DEFAULT_MODEL, None)  # the session's shared model: stopping must not close it
        real.stop()
    assert all(urlsplit(url).hostname in LOOPBACK for url in requests)
