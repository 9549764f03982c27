"""A stopped IRC channel stops, even while the server is sending to it. On Python 3.11,
``asyncio.wait_for`` swallows a cancellation that arrives as the awaited read completes, so a
channel stopped mid-traffic read on and kept its nick on the server (the flaky channel tests of
the eighth session). A loopback server that never stops talking makes that race likely."""

from __future__ import annotations

import asyncio
import threading

from sovereign.channels.config import IrcConfig
from sovereign.channels.irc import IrcChannel

TRIES = 30


async def _chatty_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            writer.write(b":irc.test NOTICE * :still talking\r\n" * 20)
            await writer.drain()
            await asyncio.sleep(0)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def _stop_mid_traffic() -> list[int]:
    server = await asyncio.start_server(_chatty_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    kept_running = []
    try:
        for attempt in range(TRIES):
            channel = IrcChannel(IrcConfig(name="t", host="127.0.0.1", port=port, tls=False, nick="bot"))

            async def ignore(message) -> None:
                return None

            task = asyncio.ensure_future(channel.run(ignore))
            await asyncio.sleep(0.02 + attempt * 0.001)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=3)
            if task not in done:
                kept_running.append(attempt)
                task.cancel()
                await asyncio.wait({task}, timeout=3)
    finally:
        server.close()
    return kept_running


def test_a_channel_cancelled_while_lines_arrive_stops():
    outcome: list = []
    # In a thread of its own: a channel that ignores cancellation would also hang asyncio.run's
    # clean-up, and the test must fail rather than hang.
    worker = threading.Thread(target=lambda: outcome.append(asyncio.run(_stop_mid_traffic())), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a cancelled channel kept running"
    assert outcome == [[]]
