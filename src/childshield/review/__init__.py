"""The human review queue: kept media (sealed), consensus of independent reviewers, and reveals."""
