"""``python -m corral rpc-server [--host H] [--port P] [--threads N]``: this machine's CPU as
an RPC worker for models loaded elsewhere with ``rpc_servers=["H:P"]`` (``corral.serve_rpc``,
the same as the ``corral rpc-server`` command)."""

from __future__ import annotations

import argparse
import inspect
import signal
from typing import Optional, Sequence

import corral


def main(argv: Optional[Sequence[str]] = None) -> None:
    # serve_rpc's own defaults, so that --help shows what it takes.
    defaults = inspect.signature(corral.serve_rpc).parameters
    parser = argparse.ArgumentParser(prog="python -m corral")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    server = commands.add_parser(
        "rpc-server",
        help="serve this machine's CPU to models loaded with rpc_servers",
        description="Serve this machine's CPU to corral processes that load models with rpc_servers=['host:port']. "
        "The protocol has no authentication: listen on a private network only.",
    )
    server.add_argument("--host", default=defaults["host"].default, help="address to listen on (default: %(default)s)")
    server.add_argument("--port", type=int, default=defaults["port"].default, help="port to listen on (default: %(default)s)")
    server.add_argument("--threads", type=int, help="compute threads (default: the physical cores)")
    args = parser.parse_args(argv)

    # The server cannot be stopped from within: Ctrl-C ends the process at once, as SIGTERM does.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        corral.serve_rpc(args.host, args.port, args.threads)
    except corral.CorralError as e:
        parser.exit(1, f"python -m corral rpc-server: {e}\n")


if __name__ == "__main__":
    main()
