"""``sovereign``: serve, chat, models, doctor — and the sub-commands of each layer."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path

import typer
from rich.table import Table

from sovereign.cli import doctor as doctor_module
from sovereign.cli import weights as weights_module
from sovereign.cli.common import console, ensure_tier_weights, friendly_errors, open_services, run

app = typer.Typer(help="sovereign: a local-first thinking-model operating system.", no_args_is_help=True)
app.add_typer(weights_module.app, name="weights")
app.command("doctor")(doctor_module.doctor)


@app.command()
@friendly_errors
def serve(
    host: str = typer.Option(None, help="bind address (default from config: 127.0.0.1)"),
    port: int = typer.Option(None, help="port (default from config: 8088)"),
    api_key: str = typer.Option(None, "--api-key", envvar="SOVEREIGN_API_KEY", help="admin key to accept instead of a generated one"),
    prepare_weights: bool = typer.Option(True, help="assemble the tiers' models first if missing (they are always verified when loaded)"),
) -> None:
    """Start the OpenAI-compatible API server (loopback only unless --host says otherwise)."""
    from sovereign.server.app import create_app
    from sovereign.server.bootstrap import bootstrap_admin_key
    from sovereign.server.run import run_server

    services = open_services()
    settings = services.settings
    host = host or settings.server.host
    port = port if port is not None else settings.server.port
    spec = services.registry.get(settings.model_for("instant"))
    if prepare_weights:
        ensure_tier_weights(services)  # assemble once per machine; loading verifies the hash every time
    new_key = bootstrap_admin_key(services, api_key)
    url = f"http://{host}:{port}/v1"
    console.print(f"[bold green]sovereign[/] serving [cyan]{spec.name}[/] at [bold]{url}[/]")
    if new_key:
        console.print(f"API key (shown once, keep it): [bold yellow]{new_key}[/]")
    elif api_key:
        console.print("API key: the one given by --api-key / SOVEREIGN_API_KEY")
    else:
        console.print("API key: created at first start (shown then); make another with `sovereign keys create`")
    sys.stdout.flush()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        run_server(create_app(services), host=host, port=port)
    finally:
        services.close()  # anchors the audit head, flushes spans


@app.command()
@friendly_errors
def models() -> None:
    """List every model the OS may use, with provenance status, context and prices."""
    from sovereign.cli.provenance import provenance_status, tier_roles

    services = open_services()
    roles = tier_roles(services.settings)
    table = Table(title="models ($ per million tokens: cached / uncached input / output)",
                  caption=f"roles from \\[kernel.tiers]; shared weights cache: {services.settings.models_dir}")
    for column in ("name", "role", "backend", "tier", "context", "jurisdiction", "licence", "prices", "status"):
        table.add_column(column)
    for spec in services.registry:
        prices = f"{spec.prices.cached_input:g} / {spec.prices.input:g} / {spec.prices.output:g}"
        role = ", ".join(roles.get(spec.name, [])) if spec.kind == "chat" else spec.kind
        table.add_row(spec.name, role, spec.backend, spec.tier,
                      f"{spec.context_size:,}", spec.jurisdiction, spec.licence, prices, provenance_status(services, spec))
    console.print(table)


@app.command()
@friendly_errors
def chat(
    model: str = typer.Option(None, help="model name (default: the default model); 'auto': routed per turn"),
    think: bool = typer.Option(False, help="thinking mode: reason first, shown dimmed"),
    max_tokens: int = typer.Option(512, help="answer length limit"),
    data_class: str = typer.Option(None, help="with --model auto: public, internal or private (default from \\[router])"),
    voice: Path = typer.Option(None, help="a spoken question (audio file): answered in text and in speech"),
    answer: Path = typer.Option(None, help="with --voice: where to write the spoken answer (default QUESTION.answer.wav)"),
) -> None:
    """Interactive chat with streaming output. Commands: /think, /instant, /reset, /exit."""
    services = open_services()
    if voice is not None:
        from sovereign.cli.perception import voice_chat

        try:
            run(voice_chat(services, voice, answer, model=model, max_tokens=max_tokens))
        finally:
            services.close()
        return
    from sovereign.cli.chat import chat_loop

    run(chat_loop(services, model=model, think=think, max_tokens=max_tokens, data_class=data_class))


def _mount_layer_commands() -> None:
    """Each layer contributes its own sub-commands when it is part of this build."""
    mounts = [
        ("sovereign.cli.memory", "app", "memory", "group"),
        ("sovereign.cli.kb", "app", "kb", "group"),
        ("sovereign.cli.run", "run_command", "run", "command"),
        ("sovereign.cli.run", "runs_app", "runs", "group"),
        ("sovereign.cli.eval", "eval_command", "eval", "command"),
        ("sovereign.cli.tools", "mcp_app", "mcp", "group"),
        ("sovereign.cli.tools", "approvals_app", "approvals", "group"),
        ("sovereign.cli.governance", "audit_app", "audit", "group"),
        ("sovereign.cli.governance", "keys_app", "keys", "group"),
        ("sovereign.cli.governance", "identities_app", "identities", "group"),
        ("sovereign.cli.governance", "caps_app", "caps", "group"),
        ("sovereign.cli.costs", "app", "costs", "group"),
        ("sovereign.cli.route", "route_command", "route", "command"),
        ("sovereign.cli.perception", "transcribe_command", "transcribe", "command"),
        ("sovereign.cli.perception", "speak_command", "speak", "command"),
        ("sovereign.cli.channels", "app", "channels", "group"),
    ]
    for module_name, attribute, name, kind in mounts:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        target = getattr(module, attribute, None)
        if target is None:
            continue
        if kind == "group":
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)


_mount_layer_commands()

if __name__ == "__main__":
    app()
