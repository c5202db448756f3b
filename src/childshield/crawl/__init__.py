"""Fetching from the web safely: the address guard (and, later, the hotline crawler)."""
