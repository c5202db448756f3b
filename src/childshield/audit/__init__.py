"""The append-only, hash-chained audit log."""

from childshield.audit.log import AuditRecord, ChainBroken, record, verify_chain

__all__ = ["AuditRecord", "ChainBroken", "record", "verify_chain"]
