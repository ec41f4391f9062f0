"""The integration register: the YAML under `register/` that is synchub's configuration."""
