"""Submitting request lists to a Ray cluster through the Ray Jobs API (``jobs.nightly``)."""
