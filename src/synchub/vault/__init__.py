"""The vault: vendor tokens and API keys encrypted at rest under versioned data keys (ADR 0023)."""
