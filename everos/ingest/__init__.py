"""Durable ingest: uploads made durable, extracted by leased workers, published as EverOS markdown,
and the document operations (read, PATCH, DELETE, re-extraction) over their SQLite rows."""
