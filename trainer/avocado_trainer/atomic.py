"""Atomic file writes: a temp file beside the target, fsync'ed, then renamed over it."""
import os


def write_atomic(path, write, mode="wb"):
    """Calls write(handle) on a temporary file and renames it to `path` only when complete."""
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, mode) as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise
