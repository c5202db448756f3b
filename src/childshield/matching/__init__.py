"""Matching: signals in, matches against the banks out (thresholds, quality, negative banks)."""

from childshield.matching.matcher import Match, Matcher, MatchResult

__all__ = ["Match", "MatchResult", "Matcher"]
