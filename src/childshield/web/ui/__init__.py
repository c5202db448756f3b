"""The web UI: sign-in and the review queue (Jinja2 templates and htmx, no JavaScript build step)."""
