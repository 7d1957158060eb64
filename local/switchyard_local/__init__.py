"""Development-only tooling for Switchyard (local stack, sandboxes). Never imported by Lambda code."""
