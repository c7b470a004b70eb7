"""Which model versions this worker serves, and how a reload reaches every worker.

Gunicorn runs several worker processes; `POST /admin/reload` lands in one of
them. The mechanism (no preload, no signals, no Redis dependency):

1. The instance directory (`.run/serve/<port>/`, emptied when gunicorn
   starts) holds `champions.json`: the version of each model every worker
   must serve. The first worker to start resolves the registry's `champion`
   aliases and writes it; later workers (and workers gunicorn restarts after
   `max_requests`) read it, so all serve the same versions even if the
   registry moved meanwhile.
2. `/admin/reload` resolves the aliases again, loads the new versions in
   its own worker (and checks the stored files of the versions it already
   serves against their recorded digests again), then rewrites the file
   (atomically, under a file lock) with what it now serves, before
   answering. A refused version is never written, so no worker ever loads
   it, and the previous one keeps serving.
3. Every request first compares the file's inode and mtime with what the
   worker last saw (one `stat`). On a change the worker loads the listed
   versions in a background thread and swaps them in when ready; requests
   meanwhile keep being answered by the previous versions, so none is
   dropped or delayed by the load. A watcher thread makes the same check
   every `WATCH_SECONDS`, so a worker that gets no requests (keep-alive
   connections pin clients to the worker that accepted them) converges too.

Without an instance directory (an app built in-process, e.g. for a Flask
test client) the worker is alone: reload loads into it directly.

Across instances, nginx sends `/admin/reload` to every one of them
(serve/edge/nginx.conf.j2), and each runs the above against the registry.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ml.features import MODEL_NAMES
from ml.modeling import champions
from ml.modeling.champions import ArtifactRefused
from ml.settings import Settings
from serve.model import loaded as models
from serve.model.loaded import NoChampion, ServedModel

log = logging.getLogger(__name__)

CHAMPIONS_FILE = "champions.json"
WATCH_SECONDS = 1.0
Versions = dict[str, str | None]


class ModelState:
    """The models this worker serves; swapped whole, read without locks."""

    def __init__(
        self,
        settings: Settings,
        instance_dir: Path | None,
        on_loaded: Callable[[ServedModel], None] = lambda model: None,
    ) -> None:
        self._settings = settings
        self._file = None if instance_dir is None else instance_dir / CHAMPIONS_FILE
        self._lock_path = None if instance_dir is None else instance_dir / "champions.lock"
        self._on_loaded = on_loaded
        self._models: dict[str, ServedModel] = {}
        self.problems: list[str] = []
        self._seen: tuple[int, int] | None = None
        # _load_lock serialises loads (long); _flag_lock only guards the flags,
        # so a request noticing a change never waits for a load.
        self._load_lock = threading.Lock()
        self._flag_lock = threading.Lock()
        self._loading = False

    # -- reading --------------------------------------------------------------

    def get(self, name: str) -> ServedModel | None:
        """The served version of `name`, after noticing a reload elsewhere."""
        self.check_for_reload()
        return self._models.get(name)

    def all(self) -> dict[str, ServedModel]:
        self.check_for_reload()
        return dict(self._models)

    def versions(self) -> Versions:
        return {name: getattr(self._models.get(name), "version", None) for name in MODEL_NAMES}

    # -- loading --------------------------------------------------------------

    def start(self) -> None:
        """Serve the versions in the champions file, writing it if first."""
        if self._file is None:
            self._apply(self._resolve_champions())
            return
        with self._file_lock():
            if not self._file.exists():
                self._write(self._resolve_champions())
        self._seen = self._stamp()
        self._apply(self._read())
        threading.Thread(target=self._watch, name="champions-watch", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                self.check_for_reload()
            except OSError:  # the instance dir went away: the server is stopping
                log.warning("champions file unreadable; the watcher stops", exc_info=True)
                return

    def reload(self) -> tuple[Versions, Versions]:
        """Point every worker at the registry's current champions.

        Returns the versions served before and after, in this worker.
        """
        previous = self.versions()
        wanted = self._resolve_champions()
        with self._load_lock:
            self._apply(wanted, verify_served=True)
        served = self.versions()
        if self._file is not None:
            with self._file_lock():
                if served != self._read():
                    self._write(served)
                with self._flag_lock:
                    self._seen = self._stamp()
        return previous, served

    def check_for_reload(self) -> None:
        """Start loading in the background if the champions file changed."""
        if self._file is None or self._loading:
            return
        stamp = self._stamp()
        if stamp == self._seen:
            return
        with self._flag_lock:
            if self._loading or stamp == self._seen:
                return
            self._seen = stamp
            self._loading = True
        threading.Thread(target=self._load_in_background, name="model-reload", daemon=True).start()

    def _load_in_background(self) -> None:
        try:
            with self._load_lock:
                self._apply(self._read())
        except Exception:  # noqa: BLE001 - a failed reload must not kill the worker
            log.exception("background model reload failed; still serving %s", self.versions())
        finally:
            self._loading = False

    def _apply(self, wanted: Versions, verify_served: bool = False) -> None:
        """Load what differs from what is served, then swap all at once.

        `verify_served`: a version already served has its stored files
        checked again; if they changed, it keeps serving from memory (it was
        verified when loaded) and the refusal is reported.
        """
        models_now = dict(self._models)
        problems = [p for p in self.problems if p.startswith("registry:")]
        for name, version in wanted.items():
            current = models_now.get(name)
            if version is None:
                if not any(f"model {name!r}" in p for p in problems):
                    problems.append(
                        f"registry: model {name!r} had no champion when the champions were "
                        "last resolved; train (make pipeline), then POST /admin/reload"
                    )
                continue
            if current is not None and current.version == version:
                if verify_served:
                    problems.extend(self._verify(name, version))
                continue
            try:
                loaded = models.load(name, version, self._settings)
            except Exception as error:  # noqa: BLE001 - reported by /ready and /admin/reload
                log.exception("cannot load %s version %s", name, version)
                problems.append(f"{name} version {version}: {public_reason(error)}")
                continue
            models_now[name] = loaded
            self._on_loaded(loaded)
        self._models = models_now
        self.problems = problems

    def _verify(self, name: str, version: str) -> list[str]:
        try:
            champions.verify_stored(name, version, self._settings)
        except ArtifactRefused as error:
            log.error("%s version %s: stored artifact refused on reload: %s", name, version, error)
            return [f"{name} version {version}: {public_reason(error)}; "
                    "still serving the copy verified when it was loaded"]
        return []

    def _resolve_champions(self) -> Versions:
        versions: Versions = {}
        problems = []
        for name in MODEL_NAMES:
            try:
                versions[name] = models.champion_version(name, self._settings)
            except NoChampion as error:
                versions[name] = None
                problems.append(f"registry: {error}")
        self.problems = problems
        return versions

    # -- the champions file -----------------------------------------------------

    def _stamp(self) -> tuple[int, int] | None:
        try:
            info = os.stat(self._file)
        except FileNotFoundError:
            return None
        return info.st_ino, info.st_mtime_ns

    def _read(self) -> Versions:
        return json.loads(self._file.read_text())

    def _write(self, versions: Versions) -> None:
        tmp = self._file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(versions, sort_keys=True))
        # A new inode per write: readers' (inode, mtime) stamps always change.
        os.replace(tmp, self._file)

    def _file_lock(self):
        return _FileLock(self._lock_path)


def public_reason(error: Exception) -> str:
    """Why a load failed, for `/ready`: a refused artifact says why (its messages
    name no path); anything else only its type, the rest is in the log."""
    if isinstance(error, ArtifactRefused):
        return f"refused: {error}"
    return f"{type(error).__name__} (details in the server log)"


class _FileLock:
    """An exclusive `flock` across worker processes."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
