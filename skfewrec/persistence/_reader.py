"""Reading a bundle's members within resource limits.

Sizes are counted while the bytes stream in, never taken from what a zip or the
manifest declares; a directory bundle's members must be regular files (opened
without following symlinks and without blocking on a FIFO); ``arrays.npz`` is
checksummed as a stream and only the arrays the model refers to are read.
"""

import hashlib
import io
import json
import os
import stat
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ._errors import BundleError

#: the resource limits of loading, for the whole process (set an attribute to change
#: one): decompressed bytes per member or array, per bundle, per JSON member; the
#: nesting depth of JSON; how many times a compressed member may expand
limits = SimpleNamespace(
    member_bytes=4 * 2**30,
    total_bytes=8 * 2**30,
    json_bytes=64 * 2**20,
    json_depth=100,
    expansion=100,
)

_CHUNK = 2**20
_ARRAY_KINDS = "biufU"


class Budget:
    """The decompressed bytes a bundle may still use."""

    def __init__(self, label, total=None):
        self.label = label
        self.left = limits.total_bytes if total is None else total

    def take(self, n_bytes, what):
        if n_bytes > limits.member_bytes:
            raise BundleError(
                f"{self.label}: {what} holds {n_bytes} bytes, more than the limit of "
                f"{limits.member_bytes} bytes per member "
                "(skfewrec.persistence.limits.member_bytes)."
            )
        if n_bytes > self.left:
            raise BundleError(
                f"{self.label}: {what} takes the bundle past its limit of "
                f"{limits.total_bytes} decompressed bytes "
                "(skfewrec.persistence.limits.total_bytes)."
            )
        self.left -= n_bytes


def check_expansion(info, what, label):
    """Refuse a zip member declaring far more bytes than it stores (a zip bomb), unread."""
    if info.file_size > limits.expansion * info.compress_size + _CHUNK:
        raise BundleError(
            f"{label}: {what} declares {info.file_size} bytes stored in {info.compress_size}: "
            f"more than {limits.expansion} times expanded, refused unread (a zip bomb?)."
        )


def read_capped(fh, limit, what, label, digest=None):
    """Read at most ``limit`` bytes; more is an error. With ``digest``, hash and keep nothing."""
    chunks = []
    total = 0
    while True:
        chunk = fh.read(min(_CHUNK, limit + 1 - total))
        if not chunk:
            break
        total += len(chunk)
        if total > limit:
            raise BundleError(
                f"{label} is corrupted or too large: {what} holds more than {limit} bytes "
                "(what its manifest lists, or a limit of skfewrec.persistence.limits)."
            )
        if digest is None:
            chunks.append(chunk)
        else:
            digest.update(chunk)
    return total if digest is not None else b"".join(chunks)


class Reader:
    """Member access for a directory or a zip bundle."""

    def __init__(self, source, label):
        self.label = label
        self._dir_fd = None
        self._zip = None
        if isinstance(source, bytes | bytearray | memoryview):
            self._open_zip(io.BytesIO(bytes(source)))
            return
        path = Path(os.fspath(source))
        if path.is_dir():
            self._dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        elif path.is_file():
            self._open_zip(path)
        elif path.exists():
            raise BundleError(f"{label} is neither a directory nor a regular (zip) file.")
        else:
            raise FileNotFoundError(f"No model bundle at {str(path)!r}: it does not exist.")

    def _open_zip(self, source):
        try:
            self._zip = zipfile.ZipFile(source)
        except Exception as exc:  # BadZipFile, NotImplementedError (a version byte), ...
            raise BundleError(
                f"{self.label} is not a readable skfewrec bundle: not a directory bundle and "
                f"not a valid zip file ({exc}); it may be truncated. Save the model again."
            ) from None

    def open(self, name):
        """A binary file object for a member, or None when it is missing."""
        if self._zip is not None:
            try:
                info = self._zip.getinfo(name)
            except KeyError:
                return None
            check_expansion(info, f"member {name!r}", self.label)
            return self._zip.open(info)
        return self._open_regular(name)

    def _open_regular(self, name):
        # each folder and the file itself opened without following symlinks, the file
        # without blocking (a FIFO), then required to be a regular file
        flags = os.O_RDONLY | os.O_NOFOLLOW
        parts = name.split("/")
        fds = []
        try:
            fd = self._dir_fd
            for part in parts[:-1]:
                fd = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
                fds.append(fd)
            fd = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BundleError(
                f"{self.label}: member {name!r} cannot be opened as a regular file ({exc}); "
                "bundle members must be plain files, not symlinks, FIFOs or devices."
            ) from None
        finally:
            for folder in fds:
                os.close(folder)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise BundleError(
                f"{self.label}: member {name!r} is not a regular file; bundle members must be "
                "plain files, not symlinks, FIFOs or devices."
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")

    def close(self):
        if self._zip is not None:
            self._zip.close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def _finite_float(text):
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"the number {text[:20]} is out of range")
    return value


def _refuse_constant(name):
    raise ValueError(f"{name} is not a JSON number")


def _depth(doc):
    """The nesting depth of lists and dicts, without recursion."""
    deepest, stack = 0, [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            deepest = max(deepest, depth)
            if depth > limits.json_depth:
                break
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
    return deepest


def parse_json(data, name, label):
    """A JSON member as Python values: finite numbers only, nesting bounded."""
    try:
        doc = json.loads(
            data.decode("utf-8"), parse_float=_finite_float, parse_constant=_refuse_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise BundleError(
            f"{label}: {name} is not valid JSON ({reason}); the bundle is corrupted."
        ) from None
    if _depth(doc) > limits.json_depth:
        raise BundleError(
            f"{label}: {name} is nested more than {limits.json_depth} levels deep; refused."
        )
    return doc


def sha256_stream(fh, size, what, label):
    """The SHA-256 of a member read as a stream (nothing kept), and its length."""
    digest = hashlib.sha256()
    n_bytes = read_capped(fh, size, what, label, digest=digest)
    return digest.hexdigest(), n_bytes


class LazyArrays:
    """The arrays of ``arrays.npz``, each read (within the limits) on first use."""

    def __init__(self, fh, budget, label):
        self.label = label
        self._budget = budget
        self._cache = {}
        if isinstance(fh, zipfile.ZipExtFile) and fh._compress_type != zipfile.ZIP_STORED:
            # seeking back in a compressed member decompresses it again: read it once
            fh = io.BytesIO(read_capped(fh, limits.member_bytes, "arrays.npz", label))
        try:
            self._zip = zipfile.ZipFile(fh)
            self._infos = {
                info.filename[:-4]: info
                for info in self._zip.infolist()
                if info.filename.endswith(".npy")
            }
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            raise BundleError(f"{label}: arrays.npz cannot be read ({exc}).") from None

    def __contains__(self, key):
        return isinstance(key, str) and key in self._infos

    def __getitem__(self, key):
        if key not in self._cache:
            self._cache[key] = self._read(key)
        return self._cache[key]

    def _read(self, key):
        info = self._infos[key]
        what = f"array {key!r} of arrays.npz"
        check_expansion(info, what, self.label)
        with self._zip.open(info) as fp:
            version = np.lib.format.read_magic(fp)
            header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = header(fp)
            if dtype.hasobject or dtype.kind not in _ARRAY_KINDS or dtype.names is not None:
                raise BundleError(
                    f"{self.label}: {what} has dtype {dtype}; bundles hold only numbers, "
                    "booleans and strings (an object array would need pickle)."
                )
            n_bytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
            if n_bytes > info.file_size:
                raise BundleError(
                    f"{self.label}: {what} declares shape {shape} but stores fewer bytes; the "
                    "bundle is corrupted."
                )
            self._budget.take(n_bytes, what)
            buf = bytearray(n_bytes)
            if fp.readinto(memoryview(buf)) != n_bytes:
                raise BundleError(f"{self.label}: {what} is truncated.")
        return np.frombuffer(buf, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    def close(self):
        self._zip.close()
