"""The hub's own OAuth 2.0 authorization server, access-token checks, scopes and audit."""
