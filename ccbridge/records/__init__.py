"""The ingest of AMI events into the record store (issue 12)."""
