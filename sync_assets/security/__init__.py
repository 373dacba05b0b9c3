"""Security's home: where PII keys come from (keys.py), sealing and opening values (crypto.py),
keyed fingerprints (fingerprint.py), the catalog's PII fields in records and JSON (fields.py),
the SQL functions the warehouse uses (sql.py) and key rotation (rotate.py). docs/security.md
says what is protected and how to run it."""
