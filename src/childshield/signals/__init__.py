"""Signals: hashes computed from content, one module per signal type."""
