"""Statements of the migrations that serve the cluster registry (``syncer.registry``).

Kept apart from ``syncer.migrations``, which lists every migration in order."""

from __future__ import annotations

# A rotated agent token keeps working until ``previous_token_expires_at`` (the server's clock),
# so that a running agent can be switched to the new token without a gap. Like the current
# token, it is kept only as its SHA-256; a second rotation replaces it.
PREVIOUS_AGENT_TOKENS: tuple[str, ...] = (
    "ALTER TABLE clusters ADD COLUMN previous_token_hash TEXT,"
    " ADD COLUMN previous_token_expires_at TIMESTAMP WITH TIME ZONE",
)
