"""The nightly batch: ``python -m jobs.nightly`` is ``talkfarm submit`` (``pipeline.submit``)
without the rest of the CLI, for the CronJob and for hosts without the talkfarm script."""

from __future__ import annotations

from pipeline.submit import main

if __name__ == "__main__":
    raise SystemExit(main())
