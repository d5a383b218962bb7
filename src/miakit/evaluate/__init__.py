"""Metrics on (scores, membership) arrays; nothing here knows about models."""
