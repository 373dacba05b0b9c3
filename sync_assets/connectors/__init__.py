"""Connectors to the systems kept in sync: how each stores the catalog's entities (`mappings`)
and how to read them, read-only and in bounded chunks (`sources`)."""
