"""The REST contract: breaking-change checks and the reference page for openapi/v1.yaml."""
