"""`mlconnector listen`: run the webhook receiver."""

import logging
from typing import Annotated

import typer

from mlconnector import api
from mlconnector.cli.common import err, runtime


def listen(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (put a TLS reverse proxy in front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8765,
    process: Annotated[bool, typer.Option("--process", help="Also sync the notified records at once, not only at the next sync run.")] = False,
) -> None:
    """Receive push notifications at /hooks/SYSTEM: verify them, store them durably, answer fast.

    Each system's notify_url in connections.toml must reach this route, e.g.
    https://hooks.example.com/hooks/zoho. The next `mlconnector sync` (or --process) fetches the records.
    """
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listener = api.Listener(runtime(ctx), process=process)
    err.print(f"listening on http://{host}:{port}/hooks/{{{','.join(listener.systems)}}}"
              + (" (processing notifications at once)" if process else ""), highlight=False)
    try:
        uvicorn.run(listener.app, host=host, port=port, log_level="warning")
    finally:
        listener.close()
