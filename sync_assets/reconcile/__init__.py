"""Reconciliation: normalized system snapshots (`snapshot`) diffed against the golden records and
against each other (`diff`), with every discrepancy kept in a history table."""
