"""Partner webhooks: endpoints registered through /v1, signed per Standard Webhooks v1.

Decisions: docs/adr/0009-partner-webhooks.md.
"""
