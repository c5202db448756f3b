"""Notice and takedown: who hosts found material, removal notices, re-checks, and removal-time figures."""
