"""Finding and loading the mapping documents shipped with each connector."""

from __future__ import annotations

from importlib import resources

import yaml

from synchub.mapping.model import MappingVersion, parse_mapping_document

CONNECTORS_WITH_MAPPINGS = ("stripe", "xero", "intercom")


def load_mappings() -> dict[str, dict[str, MappingVersion]]:
    """Every mapping version, by system then version id."""
    catalogue: dict[str, dict[str, MappingVersion]] = {}
    for connector in CONNECTORS_WITH_MAPPINGS:
        path = resources.files(f"synchub.connectors.{connector}").joinpath("mapping.yaml")
        versions = parse_mapping_document(yaml.safe_load(path.read_text(encoding="utf-8")))
        for version in versions.values():
            catalogue.setdefault(version.system, {})[version.version] = version
    return catalogue
