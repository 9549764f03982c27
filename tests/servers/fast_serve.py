"""``sovereign serve`` with the echoing ``TestModel`` double as default model (no weights): the
real app and HTTP server stack, for load tests that must not wait on a CPU-bound model.

    python tests/servers/fast_serve.py PORT [--uvicorn-defaults]
    (SOVEREIGN_HOME and SOVEREIGN_API_KEY in the environment; ``--uvicorn-defaults`` serves with
    plain ``uvicorn.run`` settings instead of ``run_server``'s, the peer in bench_concurrency)
"""

from __future__ import annotations

import sys

from sovereign.config import load_settings
from sovereign.server.app import create_app
from sovereign.server.bootstrap import bootstrap_admin_key
from sovereign.server.run import run_server
from sovereign.services import Services
from sovereign.testing import TestModel, serve_every_tier


def main() -> None:
    services = Services.open(load_settings())
    serve_every_tier(services, TestModel())  # deterministic double
    bootstrap_admin_key(services)
    app, port = create_app(services, preload=False), int(sys.argv[1])
    if "--uvicorn-defaults" in sys.argv:
        import uvicorn

        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    else:
        run_server(app, host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
