"""The HTTP API (FastAPI, under /v1) and, later, the review UI: thin layers over the services."""
