"""Alembic environment: uses the connection handed over by childshield.store.migrate."""

from __future__ import annotations

from alembic import context

from childshield.store.models import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - always run through childshield.store.migrate
    raise RuntimeError("run migrations through childshield.store.migrate.upgrade()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
