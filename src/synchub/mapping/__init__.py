"""Declarative, versioned field mappings between vendor payloads and canonical records."""
