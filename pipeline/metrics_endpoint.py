"""The batch driver's Prometheus endpoint: `talkfarm batch --metrics-port N` (or
``TALKFARM_METRICS_PORT``).

The driver serves ``/metrics`` over its process's metrics folder (prometheus_client's
multiprocess mode, ``monitoring.metrics``): the driver's own series plus those of every stage
actor writing to the same folder. The folder is set in the environment before Ray starts, so
a local Ray's actors inherit it, and ``open_executor`` forwards it to the actors of a joined
cluster in their runtime env (actors on other machines write to the same path on their own
machine, which the chart's per-pod exporter serves).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass

from core.errors import BadInputError
from monitoring.metrics import ADDR_ENV, PORT_ENV, start_http_server


def add_metrics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port``, ``--metrics-addr`` and ``--metrics-linger`` on a driver command."""
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help=f"serve Prometheus metrics of the driver and its stage actors on "
                             f"http://ADDR:PORT/metrics (default ${PORT_ENV}; unset: no endpoint; 0: a free port, "
                             f"printed on stderr)")
    parser.add_argument("--metrics-addr", default=None, metavar="ADDR",
                        help=f"address the metrics endpoint binds (default ${ADDR_ENV} or 127.0.0.1)")
    parser.add_argument("--metrics-linger", type=float, default=0.0, metavar="SECONDS",
                        help="keep serving the final values this long after the job, so a scrape catches them")


@dataclass(frozen=True)
class DriverEndpoint:
    """A started (or absent) endpoint: ``port`` None when no endpoint was asked for."""

    port: int | None = None
    linger_s: float = 0.0

    def linger(self) -> None:
        """Keep the process (and so the endpoint) up ``linger_s`` seconds after the job."""
        if self.port is not None and self.linger_s > 0:
            time.sleep(self.linger_s)


def serve_driver_metrics(args: argparse.Namespace) -> DriverEndpoint:
    """Start the endpoint the command line or the environment asks for; call before Ray starts."""
    port = getattr(args, "metrics_port", None)
    if port is None and os.environ.get(PORT_ENV):
        try:
            port = int(os.environ[PORT_ENV])
        except ValueError:
            raise BadInputError(f"{PORT_ENV} is not a port number", os.environ[PORT_ENV]) from None
    if port is None:
        return DriverEndpoint()
    addr = getattr(args, "metrics_addr", None) or os.environ.get(ADDR_ENV) or "127.0.0.1"
    try:
        bound = start_http_server(port, addr)
    except OSError as err:
        raise BadInputError(f"cannot serve metrics on {addr}:{port} ({err.strerror or err})", "--metrics-port") \
            from None
    print(f"talkfarm: metrics on http://{addr}:{bound}/metrics", file=sys.stderr, flush=True)
    return DriverEndpoint(bound, max(0.0, float(getattr(args, "metrics_linger", 0.0) or 0.0)))
