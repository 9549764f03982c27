"""Swarm vs one agent, spawn overhead, and 100 concurrent sub-agents (issue 12).

1. Wall clock on N independent I/O-bound sub-tasks ("fetch page i and report it": pages from a
   loopback HTTP server that answers after ``--page-ms``), with **a scripted model double with
   300 ms per call** (``sovereign.testing.swarm.SwarmScriptModel``: deterministic, not a language
   model). Peers in the same run, on the same model double and tool:
   - one agent, one tool call per turn (N × fetches + 1 turns, the fetches one after another);
   - one agent, every sub-task's next call in one turn (parallel tool calls: fetches + 1 turns;
     the best case for a single agent that knows all its sub-tasks up front).
   The swarm: plan (1 call) → N sub-agents (all at once) → merge (1 call). Two workloads
   (``--workloads``): ``one-fetch``, 2 calls + 1 fetch per sub-task; ``follow-link``, 3 calls +
   2 fetches (read page i, follow the link found in it, answer: a sub-task with reasoning steps of
   its own). The one-agent peers do the same fetches. ``--ray``: the swarm on Ray too.
   ``--tool-nodes``: the planner plans each ``one-fetch`` sub-task as a tool node (one direct
   ``fetch_page`` call, no sub-agent: plan → N fetches → merge); ``follow-link`` sub-tasks read
   what they fetched, so they stay sub-agents. The one-agent peers are unchanged.
2. Spawn overhead per sub-agent: a zero-latency double, N sub-agents that answer in one turn;
   (swarm wall − the same N runs driven directly with ``asyncio.gather``) / N, on asyncio and on
   Ray (2 workers, ``num_cpus=2``; Ray startup not counted).
3. 100 concurrent sub-agents on this machine: N = 100, concurrency 100, the 300 ms double.
4. ``--real``: a small real-model swarm (the embedded model; four sub-tasks) vs one agent.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_swarm.py --repeat 3 --sizes 8,16,64 [--ray] [--real] [--tool-nodes]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson

from sovereign.agent import Agent, Budget, Runner, RunStore
from sovereign.kernel.messages import ChatRequest, ChatResponse, Message, ToolCall
from sovereign.store import Database
from sovereign.swarm import RayExecutor, Swarm, SwarmBudget, WorkerSpec
from sovereign.testing import FunctionModel, text_response
from sovereign.testing.swarm import SwarmScriptModel
from sovereign.tools.base import Effects, Tool, tool

MODEL_S = 0.3


class _Pages(BaseHTTPRequestHandler):
    delay = 0.5

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        time.sleep(self.delay)
        page = self.path.strip("/")
        if page.endswith("/more"):  # the page a link leads to
            body = f"<title>More on {page[:-5]}</title> the figure is {len(page) * 7}".encode()
        else:
            body = f'<title>Page {page}</title> some text, <a href="/{page}/more">more</a>'.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        return None


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024
    """The listen backlog. http.server's default is 5: more simultaneous connections than that
    overflow it, and the kernel drops their SYNs; the client resends after 1 s (then 3 s), so
    fan-outs of 8+ fetches measured the backlog, not the swarm."""
    daemon_threads = True


def page_server(delay: float) -> tuple[ThreadingHTTPServer, str]:
    handler = type("Pages", (_Pages,), {"delay": delay})
    server = _Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def fetch_tool(base: str) -> Tool:
    """``fetch_page`` with one HTTP client for all its calls (made on first use, in the loop
    that uses it: a client per call costs ~0.1 s of CPU here, loading the TLS trust store)."""
    held: dict[str, httpx.AsyncClient] = {}

    @tool(effects=Effects(source="web"), timeout=30)
    async def fetch_page(page: str) -> str:
        """Fetch a page of the local site by its number."""
        if "client" not in held:
            held["client"] = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
        return (await held["client"].get(f"{base}/{page}")).text

    return fetch_page


_LINK = re.compile(r'href="/?([^"]+)"')


def single_agent_model(n: int, *, all_at_once: bool, hops: int = 1) -> FunctionModel:
    """One agent doing the N sub-tasks itself: each is ``hops`` fetches (page i, then the link
    found in what the previous fetch returned), then it answers with them all. A call per turn:
    N × hops + 1 turns; all calls in one turn: every sub-task's next fetch at once, hops + 1 turns."""

    mark = "the figure is" if hops > 1 else "<title>"  # what the last hop of a sub-task returns
    found: list[str] = []  # the last hops' results so far (kept here: the transcript may be compacted)
    last: list[int] = [0]  # how many calls the previous turn made (their results end the transcript)

    def answer(request: ChatRequest) -> ChatResponse:
        results = [m.content or "" for m in request.messages if m.role == "tool"][-last[0]:] if last[0] else []
        found.extend(r for r in results if mark in r)
        if len(found) >= n:
            return text_response("\n".join(found))
        links = [_LINK.search(r) for r in results]
        if all_at_once:
            wanted = [link.group(1) for link in links if link] if results else [str(i) for i in range(n)]
        elif results and links[-1] and hops > 1:
            wanted = [links[-1].group(1)]
        else:
            if results and mark not in results[-1]:  # a failed fetch: the sub-task starts again
                print(f"(one-agent peer: {results[-1][:160]!r}; fetching it again)", file=sys.stderr)
            wanted = [str(len(found))]
        last[0] = len(wanted)
        calls = [ToolCall(name="fetch_page", arguments=orjson.dumps({"page": p}).decode()) for p in wanted]
        return ChatResponse(model="single", message=Message(role="assistant", tool_calls=calls),
                            finish_reason="tool_calls")

    return FunctionModel(answer, name="single", latency=MODEL_S)


def _runner(model, tmp: Path, name: str) -> Runner:
    return Runner(model=model, store=RunStore(Database(tmp / f"{name}.db")))


WORKLOADS = {"one-fetch": 1, "follow-link": 2}
"""Fetches per sub-task, one after another: ``one-fetch`` reads page i and reports it (2 model
calls, 1 fetch); ``follow-link`` reads page i, follows the link found in it and reports what it
says (3 model calls, 2 fetches: a sub-task with reasoning steps of its own)."""


def _task(n: int, hops: int = 1) -> str:
    if hops > 1:
        return ("Follow the link on each page and report what it says:\n"
                + "\n".join(f"- follow the link on page {i}" for i in range(n)))
    return "Report the title of each page:\n" + "\n".join(f"- fetch page {i}" for i in range(n))


async def _one_agent(n: int, base: str, tmp: Path, *, all_at_once: bool, hops: int = 1) -> float:
    runner = _runner(single_agent_model(n, all_at_once=all_at_once, hops=hops), tmp, f"one{n}{all_at_once}{hops}")
    agent = Agent(name="one", tools=[fetch_tool(base)],
                  budget=Budget(max_steps=n * hops + 8, max_tool_calls=n * hops + 6), context_window=1_000_000)
    started = time.perf_counter()
    result = await runner.run(agent, _task(n, hops))
    assert result.ok, result.stop_reason
    assert result.answer.count("the figure is" if hops > 1 else "<title>") == n, result.answer
    return time.perf_counter() - started


async def _swarm(n: int, base: str, tmp: Path, model, executor=None, hops: int = 1,
                 db: str | None = None) -> tuple[float, dict]:
    runner = _runner(model, tmp, db or f"swarm{n}{id(model)}")
    swarm = Swarm(runner, executor=executor)
    agent = Agent(name="boss", tools=[fetch_tool(base)])
    started = time.perf_counter()
    result = await swarm.run(agent, _task(n, hops), budget=SwarmBudget(max_agents=n, max_concurrency=n))
    took = time.perf_counter() - started
    assert result.ok, result.stop_reason
    assert [x["status"] for x in result.tree["nodes"]] == ["completed"] * n
    assert result.answer.count("the figure is" if hops > 1 else "<title>") == n
    return took, result.critical


def _swarm_model(hops: int, tool_nodes: bool = False) -> SwarmScriptModel:
    return SwarmScriptModel(tool="fetch_page", arg="page", latency=MODEL_S, hops=hops, tool_nodes=tool_nodes)


def wall_clock(sizes: list[int], repeat: int, page_s: float, workload: str, with_ray: bool = False,
               tool_nodes: bool = False) -> None:
    hops = WORKLOADS[workload]
    tool_nodes = tool_nodes and hops == 1  # a sub-task that reads what it fetched needs a sub-agent
    server, base = page_server(page_s)
    shape = ("the swarm plans each sub-task as a tool node (1 fetch, no sub-agent)" if tool_nodes
             else f"{hops + 1} model calls and {hops} fetch(es) per sub-task")
    print(f"\n## {workload}{', tool nodes' if tool_nodes else ''}: swarm vs one agent; scripted model double, "
          f"{MODEL_S * 1000:.0f} ms per call; loopback pages, {page_s * 1000:.0f} ms each; {shape}")
    ray_head = " swarm on Ray | ratio |" if with_ray else ""
    print("| sub-tasks | swarm | one agent, a call per turn | ratio | one agent, all calls in one turn | ratio |"
          f"{ray_head} CriticalSteps / total steps |")
    print("|---|---|---|---|---|---|" + ("---|---|" if with_ray else "") + "---|")
    with tempfile.TemporaryDirectory() as tmp:
        ray_executor = None
        if with_ray:  # started once (Ray's startup is not counted); workers share the runs' database
            spec = WorkerSpec(db_path=str(Path(tmp) / "ray.db"), model=_swarm_model(hops, tool_nodes),
                              tools=[fetch_tool(base)])
            ray_executor = RayExecutor(spec, workers=2)
            asyncio.run(ray_executor.start())
        for n in sizes:
            swarm_s, seq_s, par_s, ray_s, critical = [], [], [], [], {}
            for _ in range(repeat):
                took, critical = asyncio.run(_swarm(n, base, Path(tmp), _swarm_model(hops, tool_nodes), hops=hops))
                swarm_s.append(took)
                seq_s.append(asyncio.run(_one_agent(n, base, Path(tmp), all_at_once=False, hops=hops)))
                par_s.append(asyncio.run(_one_agent(n, base, Path(tmp), all_at_once=True, hops=hops)))
                if ray_executor is not None:
                    ray_s.append(asyncio.run(_swarm(n, base, Path(tmp), _swarm_model(hops, tool_nodes), ray_executor,
                                                    hops, db="ray"))[0])
            s, q, p = (statistics.median(x) for x in (swarm_s, seq_s, par_s))
            on_ray = f" {statistics.median(ray_s):.2f} s | **{q / statistics.median(ray_s):.1f}×** |" if ray_s else ""
            print(f"| {n} | {s:.2f} s | {q:.2f} s | **{q / s:.1f}×** | {p:.2f} s | {p / s:.2f}× |{on_ray} "
                  f"{critical['critical_steps']} / {critical['total_steps']} |", flush=True)
        if ray_executor is not None:
            asyncio.run(ray_executor.close())
    server.shutdown()


async def _direct(n: int, tmp: Path) -> float:
    """N sub-agent runs driven straight through the runner (the work without the swarm)."""
    runner = _runner(SwarmScriptModel(), tmp, f"direct{n}")
    agent = Agent(name="sub", tools=[])
    started = time.perf_counter()
    results = await asyncio.gather(*(runner.run(agent, f"fetch page {i}") for i in range(n)))
    assert all(r.ok for r in results)
    return time.perf_counter() - started


def spawn_overhead(n: int, repeat: int, with_ray: bool) -> None:
    print(f"\n## spawn overhead per sub-agent (zero-latency double, {n} sub-agents, no tools)")
    with tempfile.TemporaryDirectory() as tmp:
        rows = {"asyncio": [], "ray": []}
        direct = []
        ray_executor = None
        if with_ray:
            db = Path(tmp) / "ray.db"
            ray_executor = RayExecutor(WorkerSpec(db_path=str(db), model=SwarmScriptModel(tool="")), workers=2)
            asyncio.run(ray_executor.start())
        for _ in range(repeat):
            direct.append(asyncio.run(_direct(n, Path(tmp))))
            model = SwarmScriptModel(tool="")
            runner = Runner(model=model, store=RunStore(Database(Path(tmp) / "ray.db")))
            started = time.perf_counter()
            asyncio.run(Swarm(runner).run(Agent(name="b"), _task(n),
                                          budget=SwarmBudget(max_agents=n, max_concurrency=n)))
            rows["asyncio"].append(time.perf_counter() - started)
            if ray_executor is not None:
                started = time.perf_counter()
                asyncio.run(_ray_swarm(n, runner, ray_executor))
                rows["ray"].append(time.perf_counter() - started)
        d = statistics.median(direct)
        print(f"direct runs: {d / n * 1000:.2f} ms per run (median of {repeat})")
        for name, values in rows.items():
            if values:
                s = statistics.median(values)
                print(f"{name}: swarm {s / n * 1000:.2f} ms per sub-agent; overhead over the direct runs "
                      f"**{(s - d) / n * 1000:.2f} ms** per sub-agent")
        if ray_executor is not None:
            asyncio.run(ray_executor.close())


async def _ray_swarm(n: int, runner: Runner, executor: RayExecutor) -> None:
    swarm = Swarm(runner, executor=executor)
    result = await swarm.run(Agent(name="b"), _task(n), budget=SwarmBudget(max_agents=n, max_concurrency=n))
    assert result.ok, result.stop_reason


def hundred(page_s: float) -> None:
    server, base = page_server(page_s)
    with tempfile.TemporaryDirectory() as tmp:
        took, critical = asyncio.run(_swarm(100, base, Path(tmp), SwarmScriptModel(tool="fetch_page", arg="page",
                                                                                   latency=MODEL_S)))
    server.shutdown()
    print(f"\n## 100 concurrent sub-agents: all 100 completed in {took:.2f} s "
          f"(CriticalSteps {critical['critical_steps']} of {critical['total_steps']}; "
          f"speed-up over the sum of parts {critical['speedup']}×)")


def real_model(files: int) -> None:
    """The embedded instant-tier model (0.5B): which city each of ``files`` files names, as a
    swarm (one sub-task per file) and as one agent, same model, tools and budget."""
    from _common import make_home

    from sovereign.agent import AllowAll
    from sovereign.config import load_settings
    from sovereign.services import Services
    from sovereign.tools.builtins import builtin_tools

    cities = ["Paris", "Tokyo", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Dakar"][:files]
    home = make_home()
    workspace = home / "ws"
    workspace.mkdir()
    for city in cities:
        (workspace / f"{city.lower()}.txt").write_text(f"This file is about the city of {city}.\n")
    task = "Say which city each file names, one sub-task per file:\n" + "\n".join(
        f"- Which city does {c.lower()}.txt name?" for c in cities)
    services = Services.open(load_settings(home), progress=False)
    try:
        name = services.settings.model_for("instant")
        tools = [t for t in builtin_tools(workspace, services) if t.name in ("read_file", "list_files")]
        agent = Agent(name="boss", model=name, tools=tools, max_tokens=64, budget=Budget(max_steps=3, max_tool_calls=8))
        runner = Runner(services, approver=AllowAll(), workspace=workspace)
        started = time.perf_counter()
        result = asyncio.run(Swarm(runner, plan_tokens=200, synthesis_tokens=96, max_plan_attempts=2).run(
            agent, task, budget=SwarmBudget(max_agents=files + 2, max_concurrency=files)))
        swarm_s = time.perf_counter() - started
        started = time.perf_counter()
        single = asyncio.run(runner.run(agent, task))
        one_s = time.perf_counter() - started
    finally:
        services.close()
    found = lambda text: sum(c in (text or "") for c in cities)  # noqa: E731
    print(f"\n## real model ({name}, {files} files): swarm {swarm_s:.1f} s, {result.status}, "
          f"{len(result.tree['nodes'])} nodes, cities found {found(result.answer)}/{files}, CriticalSteps "
          f"{result.critical.get('critical_steps')} of {result.critical.get('total_steps')}; one agent {one_s:.1f} s, "
          f"{single.status}, cities found {found(single.answer)}/{files}; ratio {one_s / swarm_s:.2f}×")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="8,16,64")
    parser.add_argument("--page-ms", type=float, default=500)
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="one-fetch, follow-link, or both")
    parser.add_argument("--ray", action="store_true", help="also run the swarms and the spawn overhead on Ray")
    parser.add_argument("--real", action="store_true", help="also run the small real-model swarm")
    parser.add_argument("--tool-nodes", action="store_true",
                        help="the swarm plans one-fetch sub-tasks as tool nodes (direct calls, no sub-agent)")
    parser.add_argument("--real-files", type=int, default=2)
    parser.add_argument("--skip-wall", action="store_true")
    parser.add_argument("--skip-spawn", action="store_true", help="only the swarm vs one agent table")
    args = parser.parse_args()
    if not args.skip_wall:
        for workload in args.workloads.split(","):
            wall_clock([int(x) for x in args.sizes.split(",")], args.repeat, args.page_ms / 1000, workload,
                       with_ray=args.ray, tool_nodes=args.tool_nodes)
    if not args.skip_spawn:
        spawn_overhead(100, args.repeat, args.ray)
        hundred(args.page_ms / 1000)
    if args.real:
        real_model(args.real_files)


if __name__ == "__main__":
    main()
