"""Compiled object code on disk, so a kernel is optimized once per machine, not once per process.

Where: ``$CHAINRULE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/chainrule`` or
``~/.cache/chainrule``; object files live in its ``llvm/`` folder, one per
module, named by the key: the SHA-256 of the IR's code (``code_text``: the text
without its comment lines, which name the function and transform it was made
for), target triple, CPU name and features, llvmlite and LLVM versions, the
optimization pipeline and the attributes the engine adds, and this file
format's version. Anything that changes the machine code changes the key; a
comment cannot. Kernels name their symbols by a hash of their code
(``backends/llvm/lower.py``), so identical programs (``value_and_grad`` after
``grad`` of one function, the same body under another name) share one entry,
and a changed body has other code, so another key. Past ``MAX_ENTRIES`` files
the least recently used are removed.

A file is ``MAGIC``, a header (metadata length, object length, SHA-256 of
both), the metadata (the exported symbols, one a line) and the object code. A
file that is truncated, corrupt or of another format reads as a miss and is
rebuilt. Files are written to a temporary name and renamed over the final
one, so a reader sees a whole file or none, and processes compiling the same
kernel at once each write a complete copy (the last rename wins).

    >>> key = cache_key(ir_text, target, "O2")                # doctest: +SKIP
    >>> store(key, Entry(object_code, symbols=("kernel",)))    # doctest: +SKIP
    >>> load(key).symbols                                      # doctest: +SKIP
    ('kernel',)
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import llvmlite
import llvmlite.binding as llvm

if TYPE_CHECKING:
    from chainrule.backends.llvm.engine import Target

MAGIC = b"CRLLVMO1"
_HEADER = struct.Struct("<8sQQ32s")  # magic, metadata length, object length, sha256(metadata + object)
_FORMAT_VERSION = "1"
# A kernel's object code is a few KB (the test suite's average: 4.5 KB), so this is tens of MB.
MAX_ENTRIES = 4096


@dataclass(frozen=True)
class Entry:
    """One compiled module: its object code and the symbols it exports."""

    object_code: bytes
    symbols: tuple[str, ...]


def cache_directory() -> Path:
    """The folder object files are kept in (read from the environment on each call)."""
    explicit = os.environ.get("CHAINRULE_CACHE_DIR")
    if explicit:
        return Path(explicit) / "llvm"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chainrule" / "llvm"


def cache_key(ir_text: str, target: Target, *settings: str) -> str:
    """The hex SHA-256 naming the object code of ``ir_text`` built for ``target``.

    ``settings`` are the rest of what decides the machine code: the optimization
    pipeline, the attributes the engine adds.
    """
    digest = hashlib.sha256()
    for part in (
        _FORMAT_VERSION,
        llvmlite.__version__,
        ".".join(map(str, llvm.llvm_version_info)),
        target.triple,
        target.cpu,
        target.features,
        *settings,
        code_text(ir_text),
    ):
        encoded = part.encode("utf-8")
        # Length-prefixed, so moving text from one part to the next changes the key.
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def code_text(ir_text: str) -> str:
    """``ir_text`` without its comment lines (a line whose first non-blank character is ``;``; a
    comment after code on a line stays, as does a ``;`` in a string constant).

    >>> code_text("; grad of f\\ndefine void @k() {\\n  ; loop\\n  ret void\\n}")
    'define void @k() {\\n  ret void\\n}'
    """
    # Found from the semicolons (a few thousand in a 2 MB module) rather than by splitting the text
    # into lines: a third of the time.
    kept: list[str] = []
    copied_to = 0  # ir_text before this is in kept, or dropped
    semicolon = ir_text.find(";")
    while semicolon >= 0:
        line_start = ir_text.rfind("\n", 0, semicolon) + 1
        line_end = ir_text.find("\n", semicolon)
        if line_end < 0:
            line_end = len(ir_text)
        if not ir_text[line_start:semicolon].strip():  # a comment line: dropped with its newline
            kept.append(ir_text[copied_to:line_start])
            copied_to = line_end + 1
        semicolon = ir_text.find(";", line_end)
    kept.append(ir_text[copied_to:])
    text = "".join(kept)
    # a comment on the last line leaves the newline before it, which joining the lines would not
    return text[:-1] if copied_to > len(ir_text) and text else text


def path_of(key: str) -> Path:
    return cache_directory() / f"{key}.o"


def load(key: str) -> Entry | None:
    """The entry stored under ``key``, or None if there is none or it is damaged (then it is removed)."""
    path = path_of(key)
    try:
        data = path.read_bytes()
    except OSError:
        return None
    entry = _decode(data)
    try:
        if entry is None:
            path.unlink()
        else:
            os.utime(path)  # eviction removes the least recently used entries
    except OSError:
        pass  # another process may have replaced or removed it already
    return entry


def quarantine(key: str, reason: str) -> None:
    """Move the entry under ``key`` aside (``<key>.bad``, kept for a bug report) after it failed to
    load, so the next compile rebuilds it instead of failing the same way for good."""
    path = path_of(key)
    try:
        os.replace(path, path.with_suffix(".bad"))
    except OSError:
        pass  # another process moved or replaced it already
    warnings.warn(
        f"chainrule: the cached object code {path.name} could not be loaded ({reason}); "
        f"moved to {path.with_suffix('.bad').name} and compiled again",
        stacklevel=3,
    )


def store(key: str, entry: Entry) -> None:
    """Write ``entry`` under ``key`` atomically. A cache that cannot be written is skipped with a warning."""
    folder = cache_directory()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=f".{key[:16]}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(_encode(entry))
            os.replace(temporary, path_of(key))
        except BaseException:
            os.unlink(temporary)
            raise
        _evict(folder)
    except OSError as error:
        warnings.warn(f"chainrule: cannot write the LLVM compile cache in {folder}: {error}", stacklevel=2)


def _evict(folder: Path) -> None:
    """Past ``MAX_ENTRIES`` files, remove the least recently used down to three quarters of it."""
    # Every store lists the folder: names only (a full cache's 4,096 stats cost ~20 ms a compile),
    # the files' times only when some must go.
    with os.scandir(folder) as listing:
        objects = [entry for entry in listing if entry.name.endswith(".o")]
    if len(objects) <= MAX_ENTRIES:
        return
    entries = []
    for entry in objects:
        try:
            entries.append((entry.stat().st_mtime, entry.path))
        except OSError:
            continue  # removed by another process meanwhile
    entries.sort()
    for _, path in entries[: len(entries) - MAX_ENTRIES * 3 // 4]:
        try:
            os.unlink(path)
        except OSError:
            pass


def _encode(entry: Entry) -> bytes:
    metadata = "\n".join(entry.symbols).encode("utf-8")
    checksum = hashlib.sha256(metadata + entry.object_code).digest()
    return _HEADER.pack(MAGIC, len(metadata), len(entry.object_code), checksum) + metadata + entry.object_code


def _decode(data: bytes) -> Entry | None:
    if len(data) < _HEADER.size:
        return None
    magic, metadata_length, object_length, checksum = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    if magic != MAGIC or len(body) != metadata_length + object_length:
        return None
    if hashlib.sha256(body).digest() != checksum:
        return None
    metadata = body[:metadata_length].decode("utf-8")
    return Entry(body[metadata_length:], tuple(metadata.split("\n")) if metadata else ())
