"""`talkfarm submit`: send a request list to a Ray cluster through the Ray Jobs API (jobs.nightly)."""

from __future__ import annotations

import argparse


def add_submit_command(commands) -> None:
    """Register ``talkfarm submit`` on the CLI's subparsers."""
    from jobs.nightly import add_arguments, handle

    submit = commands.add_parser(
        "submit", help="submit a request list to a Ray cluster (Ray Jobs API), idempotently per night",
        description="Submit `talkfarm batch` for a request list to a Ray cluster through the Ray Jobs API. The "
                    "submission id is talkfarm-nightly-<date>-<sha256 of the list>: the same list on the same night "
                    "is never submitted twice. Follows the job's logs; exit code 1 if the job failed.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(submit)
    submit.set_defaults(handler=handle)
