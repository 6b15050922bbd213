"""Zip members read safely: only plain (STORED) or DEFLATE entries, never encrypted or patched,
sizes checked before anything is read, every zipfile/zlib error turned into a FileProblem naming
the entry. PyTorch checkpoints and .npz files are both zips.

A STORED member's bytes lie as they are in the file, after the member's 30-byte local header, its
name and an "extra" field: `read_stored_into` reads them straight into the caller's array (no
intermediate bytes object) and checks the CRC-32 the archive records.
"""
import contextlib
import lzma
import struct
import zipfile
import zlib

import numpy as np

from .limits import FileProblem, read_exactly_into, short

# General-purpose flag bits that mean "this entry cannot be read as plain bytes".
_ENCRYPTED, _PATCHED, _STRONG_ENCRYPTION = 0x1, 0x20, 0x40
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")   # signature ... name length, extra length
_LOCAL_SIGNATURE = b"PK\x03\x04"
_METHOD_NAMES = {zipfile.ZIP_STORED: "STORED", zipfile.ZIP_DEFLATED: "DEFLATE"}
# Errors zipfile, zlib and lzma raise on a corrupt archive (zipfile raises NotImplementedError for a
# compression method it does not support, RuntimeError for an encrypted member).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, lzma.LZMAError, NotImplementedError,
               RuntimeError, EOFError, OSError, ValueError, struct.error, KeyError, OverflowError)


@contextlib.contextmanager
def reading(entry):
    """Turn any zipfile/zlib/lzma error raised inside the block into a FileProblem naming `entry`."""
    try:
        yield
    except _ZIP_ERRORS as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        raise FileProblem(f"entry {entry!r}: corrupt zip member ({type(error).__name__}: {error})") from error


def open_archive(path):
    """zipfile.ZipFile(path), its errors as FileProblem."""
    try:
        return zipfile.ZipFile(path)
    except _ZIP_ERRORS as error:
        if isinstance(error, (FileNotFoundError, PermissionError)):
            raise
        raise FileProblem(f"truncated or corrupt zip archive ({type(error).__name__}: {error})") from error


def check_member(info, methods=(zipfile.ZIP_STORED,)):
    """Refuse an encrypted, patched or strongly encrypted entry, or one not compressed by `methods`."""
    if info.flag_bits & (_ENCRYPTED | _PATCHED | _STRONG_ENCRYPTION):
        raise FileProblem(f"entry {short(info.filename)} is encrypted or a patch (zip flag bits "
                          f"{info.flag_bits:#06x}); weight files are plain archives")
    if info.compress_type not in methods:
        allowed = " or ".join(_METHOD_NAMES[m] for m in methods)
        raise FileProblem(f"entry {short(info.filename)} uses zip compression method {info.compress_type}; "
                          f"only {allowed} entries are read here")


def stored_data_offset(stream, info, file_size):
    """Where a STORED member's bytes start in the file, from its local header (checked)."""
    stream.seek(info.header_offset)
    header = stream.read(_LOCAL_HEADER.size)
    if len(header) < _LOCAL_HEADER.size or header[:4] != _LOCAL_SIGNATURE:
        raise FileProblem(f"entry {short(info.filename)}: its local header is missing or corrupt")
    name_length, extra_length = _LOCAL_HEADER.unpack(header)[-2:]
    name = stream.read(name_length)
    if name != info.orig_filename.encode("utf-8") and name != info.orig_filename.encode("cp437", "replace"):
        raise FileProblem(f"entry {short(info.filename)}: the local header names another file")
    start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
    if start + info.file_size > file_size:
        raise FileProblem(f"entry {short(info.filename)}: its {info.file_size:,} bytes run past the end of the file")
    return start


def read_stored_into(stream, info, file_size, array, skip=0):
    """Fill `array` (C-contiguous) from STORED member `info`, starting `skip` bytes into the member.

    `skip + array.nbytes` must be the member's size; the CRC-32 of the whole member is checked.
    """
    check_member(info)
    if skip + array.nbytes != info.file_size:
        raise FileProblem(f"entry {short(info.filename)} has {info.file_size:,} bytes, expected {skip + array.nbytes:,}")
    start = stored_data_offset(stream, info, file_size)
    stream.seek(start)
    crc = [zlib.crc32(stream.read(skip))]
    read_exactly_into(stream, array, f"entry {short(info.filename)}",
                      each_piece=lambda piece: crc.append(zlib.crc32(piece, crc.pop())))
    if crc[0] != info.CRC:
        raise FileProblem(f"entry {short(info.filename)}: CRC-32 mismatch, the bytes are corrupt")
    return array


def read_stored_bytes(stream, info, file_size):
    """The bytes of a small STORED member (its size is the caller's to charge), CRC checked."""
    return read_stored_into(stream, info, file_size, np.empty(info.file_size, np.uint8)).tobytes()
