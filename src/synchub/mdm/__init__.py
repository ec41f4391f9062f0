"""Master data: golden records, crosswalk, source snapshots, provenance and conflicts."""
