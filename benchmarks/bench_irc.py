"""The IRC channel on a real server (Debian's ngircd, loopback): a reply burst of N lines with the
channel's flood control (the default token buckets) vs the same burst sent unpaced (the peer), in
the same run; then reconnects after server restarts.

Per mode: seconds until a second client has every line, lines lost, kicks and disconnects of the
bot, and the server's lag (a PING's round trip, measured every 10 s while the burst drains: with
an unpaced burst the PING waits behind everything the server has not read yet). Reconnect: time
from the restarted server listening to the bot back in its channel, median of R restarts after
an outage of ``--outage`` seconds, with the default back-off and with a 60 s cap (the peer).

Run: .venv/bin/python benchmarks/bench_irc.py [--lines 1000] [--restarts 5] [--outage 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from servers.ngircd import IrcClient, Ngircd  # noqa: E402

from sovereign.channels.bridge import ChannelAgent  # noqa: E402
from sovereign.channels.config import IrcConfig  # noqa: E402
from sovereign.channels.irc import IrcChannel  # noqa: E402
from sovereign.config import load_settings  # noqa: E402
from sovereign.services import Services  # noqa: E402
from sovereign.testing import FunctionModel, serve_every_tier, text_response  # noqa: E402


class Bot:
    def __init__(self, services: Services, config: IrcConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self.channel = IrcChannel(config, services.egress)
        self.agent = ChannelAgent(services, self.channel, config)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self.channel.run(self.agent.handle))
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    def joined(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while "#bench" not in self.channel.joined:
            if time.monotonic() > deadline:
                raise RuntimeError("the bot did not join")
            time.sleep(0.01)

    def lag(self) -> float:
        """A PING's round trip; ``inf`` when no PONG came within 120 s."""
        try:
            return asyncio.run_coroutine_threadsafe(self.channel.lag(120), self.loop).result(timeout=130)
        except (TimeoutError, asyncio.TimeoutError):
            return float("inf")

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


def services_with(lines: list[str]) -> Services:
    home = Path(tempfile.mkdtemp(prefix="sovereign-irc-bench-"))
    services = Services.open(load_settings(home), progress=False)
    serve_every_tier(services, FunctionModel(lambda request: text_response("\n".join(lines)), name="double"))
    return services


def burst(server: Ngircd, count: int, paced: bool) -> dict:
    lines = [f"line {i:04d} of the burst" for i in range(count)]
    services = services_with(lines)
    rates = {} if paced else {"burst_lines": 10**6, "lines_per_s": 10**6, "burst_bytes": 10**9, "bytes_per_s": 10**9}
    config = IrcConfig(name="bench", host="127.0.0.1", port=server.port, tls=False, nick="sovbot",
                       channels=["#bench"], max_reply_lines=count + 1, **rates)
    bot = Bot(services, config)
    bot.joined()
    person = IrcClient(server.port, "reader")
    person.send("JOIN #bench")
    person.expect(lambda line: b" JOIN " in line and line.startswith(b":reader!"))
    person.send("PRIVMSG #bench :sovbot: burst please")
    got: list[str] = []
    lags: list[float] = []
    pings_started = [0]
    started = time.monotonic()
    next_lag = started + 5
    while len(got) < count:
        try:
            line = person.expect(lambda raw: raw.startswith(b":sovbot!") and b" PRIVMSG #bench :" in raw, timeout=60)
        except AssertionError:
            break
        got.append(line.split(b" :", 1)[1].decode())
        if time.monotonic() > next_lag and len(got) < count - 5:
            pings_started[0] += 1
            threading.Thread(target=lambda: lags.append(bot.lag()), daemon=True).start()
            next_lag = time.monotonic() + 10
    elapsed = time.monotonic() - started
    time.sleep(1)
    deadline = time.monotonic() + 130
    while len(lags) < pings_started[0] and time.monotonic() < deadline:  # the last PINGs still out
        time.sleep(0.5)
    stats = bot.channel.stats
    result = {"mode": "paced" if paced else "unpaced", "lines": count, "received": len(got),
              "in_order": got == lines[:len(got)], "seconds": round(elapsed, 1),
              "lines_per_s": round(len(got) / elapsed, 2), "kicks": stats.kicks,
              "disconnects": stats.connects - 1, "pings": len(lags),
              "pings_unanswered_120s": sum(1 for lag in lags if lag == float("inf")),
              "max_answered_lag_s": round(max((lag for lag in lags if lag != float("inf")), default=0), 2),
              "median_lag_s": round(statistics.median(lags), 2) if lags else None}
    person.close()
    bot.stop()
    services.close()
    return result


def reconnects(server: Ngircd, restarts: int, outage: float, max_backoff: float | None) -> list[float]:
    services = services_with(["unused"])
    extra = {} if max_backoff is None else {"reconnect_fast_s": max_backoff, "reconnect_max_s": max_backoff}
    config = IrcConfig(name="bench", host="127.0.0.1", port=server.port, tls=False, nick="sovbot", channels=["#bench"],
                       **extra)
    bot = Bot(services, config)
    bot.joined()
    took = []
    for _ in range(restarts):
        server.stop()
        time.sleep(outage)
        back = server.restart()
        deadline = time.monotonic() + 30
        while bot.channel.stats.last_joined is None or bot.channel.stats.last_joined < back:
            if time.monotonic() > deadline:
                raise RuntimeError("no reconnect in 30 s")
            time.sleep(0.01)
        took.append(round(bot.channel.stats.last_joined - back, 3))
        time.sleep(1)
    bot.stop()
    services.close()
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--restarts", type=int, default=5)
    parser.add_argument("--modes", default="paced,unpaced")
    parser.add_argument("--outage", type=float, default=0.0, help="seconds the server stays down at each restart")
    args = parser.parse_args()
    server = Ngircd(Path(tempfile.mkdtemp(prefix="sovereign-ngircd-"))).start()
    try:
        for mode in filter(None, args.modes.split(",")):
            print(json.dumps(burst(server, args.lines, paced=(mode == "paced"))), flush=True)
        for label, cap in (("default back-off (2 s cap in an outage's first minute)", None),
                           ("peer: plain doubling to 60 s", 60.0)):
            if not args.restarts:
                break
            took = reconnects(server, args.restarts, args.outage, cap)
            print(json.dumps({"reconnect": label, "outage_s": args.outage, "after_restart_s": took,
                              "median_s": statistics.median(took), "max_s": max(took)}), flush=True)
    finally:
        server.close()


if __name__ == "__main__":
    main()
