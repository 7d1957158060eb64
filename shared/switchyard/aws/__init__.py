"""Adapters to AWS services (botocore at the edge; errors translated into Switchyard's)."""
