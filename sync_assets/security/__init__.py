"""Security: what keeps secrets and personal data from leaving the process, and who may write
what (docs/security.md)."""
