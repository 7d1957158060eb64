"""HTTP clients of target systems. Each translates transport and HTTP failures into
``switchyard.errors`` at its boundary, once, so callers only see Retryable/Permanent errors."""
