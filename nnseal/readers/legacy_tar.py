"""torch.save's two pre-zip formats, recognised the way torch.load recognises them.

torch.load falls back from zip to the legacy formats: a tar archive (detected by ``tarfile``,
which checks the header checksum, not the ``ustar`` magic) and the pre-1.6 pickle stream
that starts with torch's magic number. nnseal never loads either; sanitize refuses them and
scan reports them, and both decide "is this a legacy checkpoint" here, the same way.
"""

from __future__ import annotations

TAR_BLOCK = 512
# pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2): the magic number torch's legacy format starts with.
LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
# What tarfile's nti() can parse in the checksum field: octal digits, spaces and NULs, or a
# base-256 number (first byte 0x80 or 0xff).
_OCTAL_FIELD = frozenset(b"01234567 \0")


def is_tar_header(head: bytes) -> bool:
    """Whether ``tarfile.open(mode="r:")`` accepts the first block: its checksum and numeric fields.

    ``TarInfo.frombuf`` only parses the 512 bytes (no member is read or extracted).
    """
    if len(head) < TAR_BLOCK:
        return False
    checksum = head[148:156]
    if checksum[0] not in (0x80, 0xFF) and not _OCTAL_FIELD.issuperset(checksum):
        return False  # tarfile could not even read the checksum: the common case, decided without it
    import tarfile

    try:
        tarfile.TarInfo.frombuf(head[:TAR_BLOCK], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError, OverflowError, UnicodeError):
        return False
    return True
