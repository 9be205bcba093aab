"""`mlconnector listen`: run the webhook receiver."""

import logging
import socket
import sys
from typing import Annotated, Optional

import typer

from mlconnector import api, logs
from mlconnector.cli.common import err, runtime
from mlconnector.errors import ConfigError
from mlconnector.health import Limits, parse_duration


def listen(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on (put a TLS reverse proxy in front).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on (1-65535).")] = 8765,
    process: Annotated[bool, typer.Option("--process", help="Also sync the notified records at once, not only at the next sync run.")] = False,
    body_timeout: Annotated[float, typer.Option("--body-timeout", min=0.1, max=300, help="Seconds a sender may take to send a notification's body; a slower one gets 408 and its connection is closed.")] = 10.0,
    max_age: Annotated[Optional[str], typer.Option("--max-age", help="/health: a pair whose last sync started longer ago than this (e.g. 1h) is a problem, as for `status --check`.")] = None,
    replay_age: Annotated[str, typer.Option("--replay-age", help="/health: records waiting in the replay queue longer than this are a problem.")] = "24h",
    renew_every: Annotated[str, typer.Option("--renew-every", help="How often push channels are renewed where they near expiry (e.g. 10m); 0 leaves it to sync.")] = "10m",
) -> None:
    """Receive push notifications at /hooks/SYSTEM: verify them, store them durably, answer fast.

    Each system's notify_url in connections.toml must reach this route, e.g.
    https://hooks.example.com/hooks/zoho. The next `mlconnector sync` (or --process) fetches the records.
    Push channels are renewed here before they expire (--renew-every); one that cannot be renewed raises an alert,
    and with --process its pair is polled instead until it can.
    GET /health: 200 while notifications can be stored (503 when not), with the problems `status --check` finds
    and the inbox backlog; GET /health?check=1 answers 503 for any problem.
    Exit 2 when the address cannot be listened on (a port in use, an address not of this machine).
    """
    import uvicorn

    # A service's log (unless -v or --log-format json set one up already), in the format chosen.
    logging.basicConfig(level=logging.INFO, handlers=[logs.handler(logs.chosen, sys.stderr)])
    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    if logging.getLogger("httpx").level == logging.NOTSET:  # its line per request (renewals, polls): only with -vv
        logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("mlconnector").handlers.clear()  # a service's log: everything goes through the one above
    limits = Limits(max_age=parse_duration(max_age, "--max-age") if max_age is not None else None,
                    replay_age=parse_duration(replay_age, "--replay-age"))
    every = parse_duration(renew_every, "--renew-every").total_seconds()
    listener = api.Listener(runtime(ctx), process=process, body_timeout=body_timeout, limits=limits)
    try:
        sock = bind(host, port)  # before saying "listening": a busy port is the operator's to fix (exit 2)
        err.print(f"listening on http://{host}:{port}/hooks/{{{','.join(listener.systems)}}}"
                  + (" (processing notifications at once)" if process else ""), highlight=False)
        if every:
            listener.keep_channels_alive(every)
        server = uvicorn.Server(uvicorn.Config(listener.app, log_level="warning"))
        server.run(sockets=[sock])
    finally:
        listener.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a ConfigError naming the option to change."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ConfigError(f"--host {host!r} is not an address or a name this machine can resolve ({exc}); "
                          "use one of its interfaces, e.g. 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE (Linux, macOS, Windows)
            raise ConfigError(f"cannot listen on {host}:{port}: the port is in use; choose another with --port, "
                              "or stop what holds it") from None
        if exc.errno in (13, 10013):  # EACCES: a port below 1024 without the right
            raise ConfigError(f"cannot listen on {host}:{port}: not allowed ({exc.strerror}); use --port 1024 or "
                              "above, or put a reverse proxy in front") from None
        if exc.errno in (99, 49, 10049):  # EADDRNOTAVAIL
            raise ConfigError(f"cannot listen on {host}:{port}: --host {host} is not an address of this machine; "
                              "use one of its interfaces (e.g. 127.0.0.1, or 0.0.0.0 for all)") from None
        raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port or "
                          "--host") from None
    return sock
