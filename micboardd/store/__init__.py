"""SQLite persistence: the only package that touches the database file.

``core`` holds the :class:`Store` (writer thread, writer task, committed calls), ``planner`` decides what
a batch writes and when, ``schema`` is the on-disk layout and its migrations.
"""

from .core import AuditEntry, Store, StoreError

__all__ = ["AuditEntry", "Store", "StoreError"]
