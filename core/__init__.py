"""The records and interfaces every layer shares: the Stage interface and its resources, the
task and chunk records, requests and their controls, errors, storage, content hashing and
provenance. ``core`` imports neither ``workers`` nor ``pipeline``; imports run
``pipeline`` -> ``workers`` -> ``core``.
"""
