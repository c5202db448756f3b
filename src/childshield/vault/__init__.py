"""The evidence vault: confirmed material preserved for the legal period, with a chain of custody."""
