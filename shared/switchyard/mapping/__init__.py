"""Declarative mapping documents (YAML, one per flow), validated and compiled on load."""
