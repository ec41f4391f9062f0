"""Vendor connectors. Vendor words live only below this folder."""
