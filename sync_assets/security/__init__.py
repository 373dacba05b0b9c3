"""Security's home: what keeps secrets and personal data from leaving the process.

redact.py masks secrets in every text that leaves (errors, logs, the console, the warehouse's
error columns); keys.py says where the PII keys come from, crypto.py seals and opens values,
fingerprint.py makes keyed fingerprints, fields.py finds the catalog's PII fields in records and
JSON, sql.py gives the warehouse its SQL functions (re-sealing the warehouse under a new key:
sync_assets/warehouse/rotation.py).
docs/security.md says what is protected and how to run it."""
