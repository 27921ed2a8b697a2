"""Resumable, verified model downloads from Hugging Face.

huggingface_hub supplies the URLs, the file metadata (the LFS ETag is the file's
SHA-256), its error types and its HTTP session. The transfer itself is ours, because
huggingface_hub 2.x deletes a partial file when a download fails or is interrupted; here
it stays in `<models>/.partial/<sha256>.part` and the next attempt (after a cancel, a
lost connection or a restart of the app) continues it with a Range request. The finished
file is checked against the SHA-256 before it is moved to its place, so a file under its
final name is always whole and verified; what was verified is recorded in
`<models>/.verified.json`, and a file under a model's name that is not whole (copied in
part, cut by a full disk) is not called present but resumed.
The token goes only to the Hub's own host, never to the CDN host it redirects files to.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from filelock import FileLock, Timeout
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from app.catalog import CatalogEntry
from app.errors import (
    AccessDeniedError,
    ChecksumMismatchError,
    DownloadCancelledError,
    DownloadError,
    NotEnoughDiskSpaceError,
    OfflineError,
    RemoteNotFoundError,
)
from engine.errors import ModelLoadError
from engine.gguf_file import read_gguf
from engine.json_record import write_json_record

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
DISK_MARGIN_BYTES = 64 << 20  # keep some space free beside the file
_RETRIES = 5
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_ENDPOINT = "https://huggingface.co"
LOCK_POLL_SECONDS = 0.5  # how often a waiting download reports and checks for cancel
VERIFIED_FILE = ".verified.json"  # {file name: {"size": bytes, "sha256": hex}} of finished downloads


@dataclass(frozen=True)
class RemoteFile:
    repo_id: str
    filename: str
    size: int
    sha256: str
    url: str  # where the bytes are (the CDN location the Hub redirects to)


@dataclass(frozen=True)
class DownloadProgress:
    phase: str  # "waiting" (for another download of the same file), "downloading" or "verifying"
    done_bytes: int
    total_bytes: int
    bytes_per_second: float
    eta_seconds: float | None


ProgressCallback = Callable[[DownloadProgress], None]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_endpoint() -> str:
    """Read at call time (huggingface_hub reads HF_ENDPOINT once, at import)."""
    return os.environ.get("HF_ENDPOINT", "").rstrip("/") or DEFAULT_ENDPOINT


class _SpeedMeter:
    """Bytes per second over the last few seconds, and the ETA that follows."""

    WINDOW = 5.0

    def __init__(self) -> None:
        self._samples: list[tuple[float, int]] = []

    def add(self, done: int, total: int) -> tuple[float, float | None]:
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self.WINDOW:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        speed = (done - d0) / (now - t0) if now > t0 else 0.0
        return speed, ((total - done) / speed if speed > 0 else None)


class ModelDownloader:
    def __init__(self, models_dir: Path, *, token: str | None = None, retry_delay: float = 0.5) -> None:
        self.models_dir = Path(models_dir)
        self.token = token
        self.retry_delay = retry_delay  # seconds before the first retry; doubles each time

    # --- what is on disk ----------------------------------------------------------------
    def local_path(self, entry: CatalogEntry) -> Path | None:
        """The finished file of `entry` in the models folder, if there is one and it is whole."""
        path = self._named_file(entry)
        return path if path is not None and self.incomplete_reason(entry, path) is None else None

    def incomplete_file(self, entry: CatalogEntry) -> tuple[Path, str] | None:
        """A file under `entry`'s name that is not whole, and why; None when there is none."""
        path = self._named_file(entry)
        reason = self.incomplete_reason(entry, path) if path is not None else None
        return (path, reason) if reason else None

    def _named_file(self, entry: CatalogEntry) -> Path | None:
        if not self.models_dir.is_dir():
            return None
        names = sorted(p.name for p in self.models_dir.iterdir() if p.is_file() and p.suffix == ".gguf")
        name = entry.pick_file(names)
        return self.models_dir / name if name else None

    def incomplete_reason(self, entry: CatalogEntry, path: Path) -> str | None:
        """Why `path` is not the whole model, from what is known without hashing gigabytes:
        the size recorded when its SHA-256 was verified; for a file put there by hand, the
        catalog's exact size and its own tensor table (every tensor inside the file)."""
        size = _size(path)
        verified = self._verified().get(path.name, {}).get("size")
        expected = verified if verified is not None else entry.size_bytes if entry.size_is_exact else None
        if expected is not None and size != expected:
            return f"it has {size:,} of {expected:,} bytes"
        if verified is None:
            try:
                read_gguf(path)
            except ModelLoadError as exc:
                return str(exc)
        return None

    def _verified(self) -> dict:
        try:
            record = json.loads((self.models_dir / VERIFIED_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return record if isinstance(record, dict) else {}

    def _record_verified(self, remote: RemoteFile) -> None:
        record = self._verified()
        record[remote.filename] = {"size": remote.size, "sha256": remote.sha256}
        try:
            write_json_record(self.models_dir / VERIFIED_FILE, record)
        except OSError as exc:  # the file itself is fine; only the record of it is missing
            log.warning("could not record %s as verified: %s", remote.filename, exc)

    def partial_bytes(self, remote: RemoteFile) -> int:
        return _size(self._part_path(remote))

    def _part_path(self, remote: RemoteFile) -> Path:
        return self.models_dir / ".partial" / f"{remote.sha256}.part"

    # --- the Hub --------------------------------------------------------------------------
    def resolve(self, entry: CatalogEntry) -> RemoteFile:
        """Which file to fetch and its size, SHA-256 and location, from the Hub."""
        endpoint = hub_endpoint()
        with _hub_errors(entry.repo_id, endpoint):
            filename = entry.filename
            if filename is None:
                files = HfApi(endpoint=endpoint, token=self.token).list_repo_files(entry.repo_id)
                filename = entry.pick_file(files)
                if filename is None:
                    raise RemoteNotFoundError(
                        f"{entry.repo_id} on Hugging Face has no file matching {entry.file_pattern}; "
                        "the model may have moved. Open a GGUF file you already have instead."
                    )
            url = hf_hub_url(entry.repo_id, filename, endpoint=endpoint)
            meta = get_hf_file_metadata(url, token=self.token)
        sha256 = (meta.etag or "").lower()
        if not _SHA256.match(sha256) or not meta.size:
            raise DownloadError(
                f"Hugging Face gave no SHA-256 for {filename}, so the download could not be verified; "
                "refusing it. Try again later."
            )
        return RemoteFile(entry.repo_id, filename, meta.size, sha256, meta.location)

    # --- downloading -----------------------------------------------------------------------
    def download(
        self,
        entry: CatalogEntry,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Path:
        """The model's file, downloading (or resuming) it when it is not on disk yet."""
        existing = self.local_path(entry)
        if existing is not None:
            return existing
        if hub_offline():
            raise OfflineError(
                f"You are offline (HF_HUB_OFFLINE is set) and {entry.display_name} is not downloaded yet. "
                "Go online to download it, or open a GGUF file you already have."
            )
        remote = self.resolve(entry)
        return self.fetch(remote, progress=progress, cancel=cancel)

    def fetch(self, remote: RemoteFile, *, progress=None, cancel=None) -> Path:
        """Download `remote` (resuming its partial file), one process at a time: a second
        window or the CLI asking for the same file waits for the first, then uses its result."""
        part = self._part_path(remote)
        part.parent.mkdir(parents=True, exist_ok=True)
        report = progress or (lambda _p: None)
        lock = FileLock(part.with_suffix(".lock"))
        timeout = 0.0  # the first try does not wait, so that waiting is said at once
        while True:
            try:
                lock.acquire(timeout=timeout)
                break
            except Timeout:
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelledError("Stopped waiting for the other download of this model.") from None
                report(DownloadProgress("waiting", self.partial_bytes(remote), remote.size, 0.0, None))
                timeout = LOCK_POLL_SECONDS
        try:
            final = self.models_dir / remote.filename
            if self._verified().get(remote.filename, {}).get("sha256") == remote.sha256 and _size(final) == remote.size:
                return final  # the download we waited for finished it
            if _size(part) < _size(final) < remote.size:
                # A cut-off file under the model's name (copied in part, a full disk) becomes the
                # partial download: its bytes are not fetched again, and the SHA-256 still decides.
                os.replace(final, part)
                log.info("resuming %s from the incomplete file under its name", remote.filename)
            return self._fetch_locked(remote, part, report, cancel)
        finally:
            # No lock file left behind: removed while held. One still waiting on it then gets
            # it and finds the file done (or goes on with the partial file).
            with contextlib.suppress(OSError):
                os.unlink(lock.lock_file)
            lock.release()

    def _fetch_locked(self, remote: RemoteFile, part: Path, report, cancel) -> Path:
        self._check_disk_space(remote, part)
        meter = _SpeedMeter()
        retries = _RETRIES
        while _size(part) < remote.size:
            try:
                self._transfer(remote, part, report, meter, cancel)
                retries = _RETRIES
            except (httpx2.TransportError, _ShortBodyError) as exc:
                retries -= 1
                if retries < 0:
                    raise DownloadError(
                        f"The connection to Hugging Face kept failing ({exc}). "
                        f"{self.partial_bytes(remote) / 1e6:,.0f} MB are kept; download again to resume."
                    ) from exc
                time.sleep(min(8.0, self.retry_delay * 2 ** (_RETRIES - retries - 1)))
        if part.stat().st_size != remote.size:
            part.unlink()
            raise DownloadError(f"{remote.filename} came out larger than the Hub says; it was deleted, try again.")
        self._verify(remote, part, report)
        final = self.models_dir / remote.filename
        os.replace(part, final)
        self._record_verified(remote)
        log.info("downloaded and verified %s", final)
        return final

    def _check_disk_space(self, remote: RemoteFile, part: Path) -> None:
        need = remote.size - _size(part) + DISK_MARGIN_BYTES
        free = shutil.disk_usage(part.parent).free
        if free < need:
            raise NotEnoughDiskSpaceError(
                f"Not enough free disk space for {remote.filename}: it needs {need / 1e9:.1f} GB more and "
                f"{self.models_dir} has {free / 1e9:.1f} GB free. Free some space or choose another models folder."
            )

    def _transfer(self, remote: RemoteFile, part: Path, report, meter, cancel) -> None:
        start = _size(part)
        # The file's location is usually another host (the Hub's CDN): no token there, as
        # huggingface_hub itself does (httpx drops it on a redirect to another host too).
        to_hub = _same_host(remote.url, hub_endpoint())
        headers = build_hf_headers(token=self.token if to_hub else False)
        headers["Accept-Encoding"] = "identity"
        if start:
            headers["Range"] = f"bytes={start}-"
        with get_session().stream("GET", remote.url, headers=headers, follow_redirects=True, timeout=10) as response:
            with _hub_errors(remote.repo_id, hub_endpoint()):
                hf_raise_for_status(response)
            mode = "ab"
            if start and response.status_code != 206:  # the server ignored the Range: start over
                start, mode = 0, "wb"
            done = start
            with open(part, mode) as out:
                for chunk in response.iter_bytes(CHUNK_BYTES):
                    if cancel is not None and cancel.is_set():
                        raise DownloadCancelledError(
                            f"Download cancelled; {done / 1e6:,.0f} MB are kept and the next download resumes there."
                        )
                    out.write(chunk)
                    done += len(chunk)
                    speed, eta = meter.add(done, remote.size)
                    report(DownloadProgress("downloading", done, remote.size, speed, eta))
                out.flush()
                os.fsync(out.fileno())
            if done < remote.size:
                raise _ShortBodyError(f"the server sent {done - start:,} bytes and closed the connection")

    def _verify(self, remote: RemoteFile, part: Path, report) -> None:
        digest = hashlib.sha256()
        done = 0
        with open(part, "rb") as f:
            while block := f.read(8 * CHUNK_BYTES):
                digest.update(block)
                done += len(block)
                report(DownloadProgress("verifying", done, remote.size, 0.0, None))
        if digest.hexdigest() != remote.sha256:
            part.unlink()
            raise ChecksumMismatchError(
                f"{remote.filename} arrived damaged (its SHA-256 does not match Hugging Face's); "
                "the file was deleted. Download it again."
            )


class _ShortBodyError(Exception):
    """The connection closed before the promised bytes arrived (retried)."""


@contextmanager
def _hub_errors(repo_id: str, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub and network errors into DownloadErrors a person can act on."""
    try:
        yield
    except DownloadError:
        raise
    except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, HfHubHTTPError) as exc:
        if isinstance(exc, GatedRepoError) or _status(exc) in (401, 403):
            raise AccessDeniedError(
                f"{repo_id} needs a Hugging Face token with access (the repository is gated or private). "
                "Accept its terms on huggingface.co and add your token in Settings."
            ) from exc
        not_found = isinstance(exc, RepositoryNotFoundError | RevisionNotFoundError | EntryNotFoundError)
        if not not_found and _status(exc) != 404:
            raise DownloadError(f"Hugging Face answered with an error: {exc}") from exc
        raise RemoteNotFoundError(
            f"{repo_id} or its model file was not found on Hugging Face ({endpoint}). "
            "It may have moved; open a GGUF file you already have instead."
        ) from exc
    except httpx2.TransportError as exc:
        raise OfflineError(
            f"Cannot reach Hugging Face at {endpoint}: you seem to be offline. "
            "Connect to the internet and try again, or open a GGUF file you already have."
        ) from exc


def _same_host(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)
