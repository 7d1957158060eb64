"""GENERATED: ingest validators, one module per event type."""
