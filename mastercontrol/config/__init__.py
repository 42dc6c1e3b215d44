"""Workload, daemon and inventory configuration: the settings table, loading and validation."""
