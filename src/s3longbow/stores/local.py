"""Local filesystem adapter: a directory tree seen as a bucket, as source or destination.

Keys map to paths one to one, and a key that could escape the root (`..`, absolute paths, empty
or `.` segments) is refused. Symbolic links are followed only while they stay inside the root:
one that leads out of it is skipped when listing and refused when reading or writing. Writes go
to a temporary file under the root's `.longbow-tmp` folder and are renamed into place only when
complete, so a reader never sees half an object. Multipart uploads are folders of part files
there, so they survive a killed process too.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import hashlib
import logging
import mimetypes
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from s3longbow.errors import (
    ChecksumNotConfirmedError,
    FatalError,
    PermanentError,
    SourceChangedError,
    TransientError,
    UnsafeKeyError,
    UploadMissingError,
)
from s3longbow.model import (
    Bytes,
    Checksum,
    ObjectDetails,
    ObjectInfo,
    ObjectLock,
    ObjectProperties,
    ObjectVersion,
    PartInfo,
)
from s3longbow.mtimes import MTIME_METADATA, format_mtime, stated_mtime
from s3longbow.stores.base import Capabilities, ListingOrder, ObjectStore, Relayed
from s3longbow.stores.localwrite import link_new, replace_across_devices, write_error

log = logging.getLogger(__name__)

TMP_DIR = ".longbow-tmp"
_COPY_CHUNK = 4 * 1024 * 1024


def local_etag(st: os.stat_result) -> str:
    """A file's identity for pinning: changes whenever its size or modification time does."""
    return f"mtime-{st.st_mtime_ns:x}-{st.st_size:x}"


class LocalStore:
    """A directory tree as an object store.

    Args:
        root: The directory that plays the bucket.
        create: Create the directory when missing (for a destination).
        missing_ok: A missing directory lists as empty (a destination in a dry run).
        preserve_mtime: Files keep modification times: read, a file's is its `mtime` user
            metadata; written, a file takes the one its object's `mtime` metadata states,
            else the object's Last-Modified.
    """

    capabilities = Capabilities(
        directory_markers=False,
        multipart_etag_md5=True,
        content_etag=False,
        delimited_listing=False,  # a local walk is fast enough alone
        keeps_properties=False,
    )

    def __init__(
        self,
        root: Path,
        *,
        create: bool = False,
        missing_ok: bool = False,
        preserve_mtime: bool = False,
    ) -> None:
        self.root = root
        self._preserve_mtime = preserve_mtime
        self.name = str(root)
        self._real_root = os.path.realpath(root)
        self._create = create
        self._missing_ok = missing_ok

    def use_listing_order(self, order: ListingOrder) -> None:
        """List in `order` ("bytes" or "segments"), to match the store on the other side."""
        self.capabilities = dataclasses.replace(self.capabilities, listing_order=order)

    def describe(self, key: str = "") -> str:
        return str(self.root / key) if key else str(self.root)

    def check(self) -> None:
        if self._missing_ok and not self.root.exists():
            return
        if self._create:
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise FatalError(
                    f"cannot create destination directory {self.root}: {exc.strerror}",
                    hint="check the path and its permissions",
                ) from None
        if not self.root.is_dir():
            raise FatalError(
                f"directory {self.root} does not exist",
                hint="check the path, or use s3://bucket/prefix for a bucket",
            )
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise FatalError(f"directory {self.root} is not readable")

    # -- keys and paths ---------------------------------------------------------------------

    def path_for(self, key: str) -> Path:
        """The file path of `key`, or UnsafeKeyError when the key cannot be a safe path."""
        if not key or key.startswith("/") or "\x00" in key:
            raise UnsafeKeyError(
                f"key {key!r} cannot be stored under {self.root}: absolute or empty path",
                hint="exclude it with an ignore pattern, or copy to an S3 destination",
            )
        parts = key.split("/")
        for part in parts:
            if part in ("", ".", ".."):
                raise UnsafeKeyError(
                    f"key {key!r} cannot be stored under {self.root}: it has an empty, "
                    "'.' or '..' path segment that would change or escape the path",
                    hint="exclude it with an ignore pattern, or copy to an S3 destination",
                )
        if parts[0] == TMP_DIR:
            raise UnsafeKeyError(f"key {key!r} uses the reserved folder {TMP_DIR}")
        path = self.root.joinpath(*parts)
        if not self._inside(path):
            raise UnsafeKeyError(
                f"key {key!r} leads out of {self.root} through a symbolic link",
                hint="remove the link, or exclude the key with an ignore pattern",
            )
        return path

    def _inside(self, path: Path | str) -> bool:
        """Whether `path`, with every symbolic link resolved, is still under the root."""
        real = os.path.realpath(path)
        return real == self._real_root or real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    # -- listing ----------------------------------------------------------------------------

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        # Sorting each folder's entries by name, with "/" appended to folder names, yields
        # every key in global byte order while holding one folder's entries at a time; by
        # plain name, it yields folder-by-folder ("segments") order.
        yield from self._walk(self.root, "", prefix)

    def _walk(self, folder: Path, key_prefix: str, prefix: str) -> Iterator[ObjectInfo]:
        if self._missing_ok and not key_prefix and not folder.exists():
            return
        try:
            with os.scandir(folder) as it:
                entries = []
                for entry in it:
                    if not key_prefix and entry.name == TMP_DIR:
                        continue
                    is_dir = entry.is_dir(follow_symlinks=False)
                    if not is_dir and not entry.is_file(follow_symlinks=True):
                        continue
                    if entry.is_symlink() and not self._inside(entry.path):
                        log.warning("skipping %s: it links outside %s", entry.path, self.root)
                        continue
                    entries.append((entry.name + "/" if is_dir else entry.name, entry))
        except OSError as exc:
            raise FatalError(f"cannot list {folder}: {exc.strerror}") from None
        if self.capabilities.listing_order == "segments":
            entries.sort(key=lambda pair: pair[1].name)
        else:
            entries.sort(key=lambda pair: pair[0])
        for name, entry in entries:
            key = key_prefix + name
            try:
                key.encode("utf-8")
            except UnicodeEncodeError:
                log.warning("skipping %r: its name is not valid UTF-8", entry.path)
                continue
            if name.endswith("/"):
                # Descend only where a key under this folder could start with the prefix.
                if key.startswith(prefix) or prefix.startswith(key):
                    yield from self._walk(Path(entry.path), key, prefix)
                continue
            if not key.startswith(prefix):
                continue
            try:
                st = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # vanished while listing
            yield ObjectInfo(
                key=key, size=st.st_size, etag=local_etag(st), last_modified=st.st_mtime
            )

    def list_level(self, prefix: str) -> Iterator[ObjectInfo | str]:
        # A directory is listed in one walk: the level is flat, with no sub-prefixes.
        yield from self.list_objects(prefix)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            st = self.path_for(key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        return ObjectInfo(key=key, size=st.st_size, etag=local_etag(st), last_modified=st.st_mtime)

    # -- reading ----------------------------------------------------------------------------

    def get_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,  # files have no versions: the ETag pins them
        into: bytearray | None = None,
        each: Callable[[memoryview], None] | None = None,
    ) -> Bytes:
        path = self.path_for(key)
        data: Bytes
        try:
            with open(path, "rb") as f:
                if etag is not None and local_etag(os.fstat(f.fileno())) != etag:
                    raise SourceChangedError(f"{path} changed since the job started")
                f.seek(start)
                if into is None:
                    data = f.read(length)
                else:
                    view = memoryview(into)[:length]
                    data = view[: f.readinto(view)]
                # Check again after reading: a write during the read must not go unnoticed.
                if etag is not None and local_etag(os.fstat(f.fileno())) != etag:
                    raise SourceChangedError(f"{path} changed while it was being read")
        except FileNotFoundError:
            raise SourceChangedError(f"{path} no longer exists") from None
        except IsADirectoryError:
            raise PermanentError(f"{path} is a directory, not a file") from None
        except PermissionError:
            raise PermanentError(f"{path}: permission denied") from None
        except OSError as exc:
            raise PermanentError(f"cannot read {path}: {exc.strerror}") from None
        if len(data) != length:
            raise SourceChangedError(f"{path} is shorter than when the job started")
        if each is not None:
            each(memoryview(data))  # a file's bytes come from the page cache, not the network
        return data

    def open_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[Relayed, ObjectProperties] | None:
        return None  # files are read, not relayed

    def open_range(
        self,
        key: str,
        start: int,
        length: int,
        *,
        etag: str | None = None,
        version_id: str | None = None,
    ) -> Relayed | None:
        return None

    def read_object(
        self, key: str, size: int, *, etag: str | None = None, version_id: str | None = None
    ) -> tuple[bytes, ObjectProperties]:
        data = self.get_range(key, 0, size, etag=etag) if size else self._check_exists(key, etag)
        return bytes(data), self._properties(key, etag)

    def details(
        self,
        key: str,
        etag: str | None,
        *,
        part_one: bool = False,
        version_id: str | None = None,
    ) -> ObjectDetails:
        # Files have no parts; their only properties are the type their name suggests and
        # (when kept) their modification time.
        return ObjectDetails(self._properties(key, etag))

    def get_tags(self, key: str) -> tuple[tuple[str, str], ...]:
        return ()

    def versioning(self) -> str | None:
        return None  # a directory keeps one version of each file

    def list_versions(self, key: str) -> list[ObjectVersion]:
        head = self.head(key)
        if head is None:
            return []
        return [ObjectVersion(key, "null", head.size, head.etag, head.last_modified)]

    def _properties(self, key: str, etag: str | None = None) -> ObjectProperties:
        content_type, encoding = mimetypes.guess_type(key, strict=False)
        metadata: tuple[tuple[str, str], ...] = ()
        if self._preserve_mtime:
            # The time of the version the read was pinned to (its ETag holds it), else now's.
            pinned = etag.split("-") if etag and etag.startswith("mtime-") else None
            ns = int(pinned[1], 16) if pinned else self.path_for(key).stat().st_mtime_ns
            metadata = ((MTIME_METADATA, format_mtime(ns)),)
        return ObjectProperties(
            content_type=content_type, content_encoding=encoding, metadata=metadata, tag_count=0
        )

    def _kept_mtime(self, properties: ObjectProperties | None) -> int | None:
        """The modification time (ns) a file written with these properties takes, if any."""
        if not self._preserve_mtime or properties is None:
            return None
        stated = stated_mtime(properties.metadata)
        if stated is None and properties.last_modified is not None:
            stated = round(properties.last_modified * 1e9)
        return stated

    def _check_exists(self, key: str, etag: str | None) -> bytes:
        head = self.head(key)
        if head is None or (etag is not None and head.etag != etag):
            raise SourceChangedError(f"{self.path_for(key)} changed since the job started")
        return b""

    # -- writing ----------------------------------------------------------------------------

    def delete_object(self, key: str) -> None:
        try:
            self.path_for(key).unlink()
        except FileNotFoundError:
            pass

    def delete_objects(self, keys: Sequence[str]) -> list[tuple[str, str]]:
        failed = []
        for key in keys:
            try:
                self.delete_object(key)
            except (OSError, UnsafeKeyError) as exc:
                failed.append((key, str(exc)))
        return failed

    def put_object(
        self,
        key: str,
        data: Bytes | Relayed,
        *,
        md5_b64: str,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
        checksum: Checksum | None = None,
        create_only: bool = False,
    ) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("a directory is written from bytes, not from a relayed body")
        # A file keeps only its bytes: headers, metadata, tags and checksums have nowhere to
        # go (the capabilities say so: no additional checksums are sent here).
        path = self.path_for(key)
        digest = hashlib.md5(data)
        if base64.b64encode(digest.digest()).decode() != md5_b64:
            raise TransientError(f"{path}: the data does not match its Content-MD5")
        tmp = self._tmp_file()
        try:
            self._io(lambda: tmp.write_bytes(data), tmp)
            self._set_mtime(tmp, self._kept_mtime(properties))
            self._move_into_place(tmp, path, create_only)
        finally:
            tmp.unlink(missing_ok=True)
        return digest.hexdigest()

    def create_upload(
        self,
        key: str,
        *,
        storage_class: str | None = None,
        properties: ObjectProperties | None = None,
        tags: tuple[tuple[str, str], ...] = (),
        checksum_algorithm: str | None = None,
        full_object: bool = False,
    ) -> str:
        self.path_for(key)  # refuse unsafe keys before any part is sent
        upload_id = uuid.uuid4().hex
        folder = self._upload_dir(upload_id)
        self._io(lambda: folder.mkdir(parents=True), folder)
        (folder / "key").write_text(key, encoding="utf-8")
        mtime = self._kept_mtime(properties)
        if mtime is not None:  # applied when the parts are joined
            (folder / "mtime").write_text(str(mtime), encoding="utf-8")
        return upload_id

    def upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        data: Bytes | Relayed,
        *,
        md5_b64: str | None,
        checksum: Checksum | None = None,
    ) -> str:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError("a directory is written from bytes, not from a relayed body")
        folder = self._existing_upload(key, upload_id)
        digest = hashlib.md5(data)
        if md5_b64 is None:
            raise ChecksumNotConfirmedError(f"part {number} of {key!r}: a directory checks MD5s")
        if base64.b64encode(digest.digest()).decode() != md5_b64:
            raise TransientError(f"part {number} of {key!r} does not match its Content-MD5")
        etag = digest.hexdigest()
        for old in folder.glob(f"{number:05d}-*"):
            old.unlink(missing_ok=True)
        tmp = folder / f".{number:05d}.{uuid.uuid4().hex}"
        try:
            self._io(lambda: tmp.write_bytes(data), tmp)
            os.replace(tmp, folder / f"{number:05d}-{etag}")
        finally:
            tmp.unlink(missing_ok=True)
        return etag

    def list_parts(self, key: str, upload_id: str) -> list[PartInfo] | None:
        folder = self._upload_dir(upload_id)
        if not folder.is_dir():
            return None
        parts = []
        for entry in folder.iterdir():
            number, sep, etag = entry.name.partition("-")
            if sep and number.isdigit():
                parts.append(PartInfo(int(number), entry.stat().st_size, etag))
        return sorted(parts, key=lambda p: p.number)

    def complete_upload(
        self,
        key: str,
        upload_id: str,
        parts: Sequence[PartInfo],
        *,
        algorithm: str | None = None,
        full_checksum: Checksum | None = None,
        create_only: bool = False,
    ) -> str:
        folder = self._existing_upload(key, upload_id)
        path = self.path_for(key)
        tmp = self._tmp_file()
        md5s = b""

        def join_parts() -> None:
            nonlocal md5s
            with open(tmp, "wb") as out:
                for part in parts:
                    part_file = folder / f"{part.number:05d}-{part.etag}"
                    if not part_file.is_file():
                        raise PermanentError(f"part {part.number} of {key!r} is missing")
                    with open(part_file, "rb") as src:
                        shutil.copyfileobj(src, out, _COPY_CHUNK)
                    md5s += bytes.fromhex(part.etag)

        try:
            self._io(join_parts, tmp)
            kept = folder / "mtime"
            self._set_mtime(tmp, int(kept.read_text()) if kept.is_file() else None)
            self._move_into_place(tmp, path, create_only)
        finally:
            tmp.unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
        return f"{hashlib.md5(md5s).hexdigest()}-{len(parts)}"

    def update_properties(
        self,
        key: str,
        *,
        etag: str | None,
        properties: ObjectProperties,
        tags: tuple[tuple[str, str], ...] | None,
        storage_class: str | None,
    ) -> None:
        raise PermanentError(f"{self.path_for(key)}: a file keeps no properties to update")

    def can_copy_from(self, source: object) -> bool:
        return False  # a directory is never copied into by a server

    def copy_object(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        *,
        etag: str | None,
        version_id: str | None = None,
        storage_class: str | None = None,
        copy_tags: bool = True,
        properties: ObjectProperties | None = None,
        create_only: bool = False,
    ) -> str:
        raise PermanentError(f"{self.describe(key)}: a directory cannot copy on a server")

    def upload_part_copy(
        self,
        source: ObjectStore,
        src_key: str,
        key: str,
        upload_id: str,
        number: int,
        start: int,
        length: int,
        *,
        etag: str | None,
        version_id: str | None = None,
    ) -> str:
        raise PermanentError(f"{self.describe(key)}: a directory cannot copy on a server")

    def object_lock(self) -> bool:
        return False  # a file has no retention

    def set_lock(self, key: str, lock: ObjectLock) -> None:
        raise PermanentError(f"{self.path_for(key)}: a file keeps no Object Lock")

    def can_relay_from(self, source: object) -> bool:
        return False  # files are read, not relayed

    def abort_upload(self, key: str, upload_id: str) -> None:
        shutil.rmtree(self._upload_dir(upload_id), ignore_errors=True)

    def close(self) -> None:
        # Remove the scratch folders when nothing is left in them (an open upload stays).
        for folder in (self.root / TMP_DIR / "uploads", self.root / TMP_DIR):
            try:
                folder.rmdir()
            except FileNotFoundError:
                continue
            except OSError:
                return

    # -- helpers ----------------------------------------------------------------------------

    def _upload_dir(self, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise PermanentError(f"invalid upload id {upload_id!r}")
        return self.root / TMP_DIR / "uploads" / upload_id

    def _existing_upload(self, key: str, upload_id: str) -> Path:
        folder = self._upload_dir(upload_id)
        if not folder.is_dir():
            raise UploadMissingError(f"upload {upload_id} of {key!r} no longer exists")
        return folder

    def _tmp_file(self) -> Path:
        folder = self.root / TMP_DIR
        self._io(lambda: folder.mkdir(parents=True, exist_ok=True), folder)
        return folder / f"put-{uuid.uuid4().hex}"

    def _move_into_place(self, tmp: Path, path: Path, create_only: bool = False) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # A link swapped in since the key was checked must not carry the file outside.
            if not self._inside(path.parent):
                raise PermanentError(f"cannot write {path}: a symbolic link leads out of the root")
            if create_only:
                link_new(tmp, path)  # never over a file that is there
                return
            try:
                os.replace(tmp, path)
            except OSError as exc:
                if exc.errno != errno.EXDEV:
                    raise
                replace_across_devices(tmp, path)
        except (NotADirectoryError, FileExistsError, IsADirectoryError):
            raise PermanentError(
                f"cannot write {path}: a file and a folder would need the same name",
                hint="two keys such as 'a' and 'a/b' cannot both be files; exclude one",
            ) from None
        except OSError as exc:
            raise write_error(self.root, path, exc) from None

    def _set_mtime(self, path: Path, ns: int | None) -> None:
        if ns is not None:
            self._io(lambda: os.utime(path, ns=(time.time_ns(), ns)), path)

    def _io(self, action: Callable[[], object], path: Path) -> None:
        try:
            action()
        except OSError as exc:
            raise write_error(self.root, path, exc) from None
