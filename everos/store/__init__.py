"""Storage: SQLite from Trio, atomic file writes under the root, and the leased queue.

Everything here runs its blocking work in ``trio.to_thread.run_sync`` under a limiter the caller
passes in, and bounds it inside the thread as well (guarantees G3, G5, G5a); see
:class:`Database`, :mod:`everos.store._files` and :class:`LeasedQueue`.
"""

from everos._exports import claim_public_names
from everos.store._files import (
    STAGING_DIRNAME,
    atomic_write_bytes,
    atomic_write_bytes_sync,
    atomic_write_text,
    atomic_write_text_sync,
    clean_staging,
    clean_staging_sync,
    ensure_within,
    ensure_within_sync,
    publish_directory,
    publish_directory_sync,
    remove_tree,
    remove_tree_sync,
    safe_join,
    staging_dir,
    staging_dir_sync,
    write_staged_files,
    write_staged_files_sync,
)
from everos.store._lease import Job, JobError, JobStatus, QueueStats
from everos.store._migrations import MigrationSet, MigrationStep, split_statements
from everos.store._queue import LeasedQueue
from everos.store._sqlite import Database, open_database

__all__ = [
    "Database",
    "Job",
    "JobError",
    "JobStatus",
    "LeasedQueue",
    "MigrationSet",
    "MigrationStep",
    "QueueStats",
    "STAGING_DIRNAME",
    "atomic_write_bytes",
    "atomic_write_bytes_sync",
    "atomic_write_text",
    "atomic_write_text_sync",
    "clean_staging",
    "clean_staging_sync",
    "ensure_within",
    "ensure_within_sync",
    "open_database",
    "publish_directory",
    "publish_directory_sync",
    "remove_tree",
    "remove_tree_sync",
    "safe_join",
    "split_statements",
    "staging_dir",
    "staging_dir_sync",
    "write_staged_files",
    "write_staged_files_sync",
]

claim_public_names(globals())
