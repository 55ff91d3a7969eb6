"""Test support, split by kind: processes, proxy, aws, factories."""
