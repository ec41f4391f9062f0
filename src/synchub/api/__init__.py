"""The HTTP API: thin routers over the same services the CLI uses."""
