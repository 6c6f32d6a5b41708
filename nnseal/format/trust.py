"""The trust folder: the public keys whose signatures `nnseal install` accepts.

One canonical SPKI PEM per key, named NAME.pub, in a folder every function here is
given (the CLI finds it from the environment). Keys are stored re-encoded (not copied),
so a trusted file holds exactly one key and nothing else. Torch-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, EnvironmentProblem, Hint, InvalidArgument, WouldOverwrite, from_os_error
from nnseal.format.keys import PUBLIC_SUFFIX, fingerprint, load_public_key, public_key_pem
from nnseal.fsutil import atomic_output

# Names become file names: keep them portable and free of path separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_FINGERPRINT_PREFIX = 8
_FINGERPRINT_PREFIX = re.compile(rf"[0-9A-Fa-f]{{{MIN_FINGERPRINT_PREFIX},}}")


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    path: Path
    key: ec.EllipticCurvePublicKey = field(compare=False, repr=False)


def signer_label(fingerprint: str | None, name: str | None = None, *, full: bool = False) -> str:
    """How reports name a signer: "liver-lab (key sha256:ab12cd34ef56ab78…)", or the key alone when
    no trusted key names it. The first 16 hex digits (`nnseal trust remove` accepts such a prefix)
    unless ``full``."""
    if not fingerprint:
        return "a key the signature does not name"
    key = f"key sha256:{fingerprint if full else fingerprint[:16] + chr(0x2026)}"
    return f"{name} ({key})" if name else key


def is_valid_key_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and not name.endswith(".")


def add_trusted_key(folder: str | os.PathLike, pub_path: str | os.PathLike, name: str | None = None) -> TrustedKey:
    """Copy a public key into the trust folder ``folder`` under NAME (default: the file's stem)."""
    key = load_public_key(pub_path)
    key_fingerprint = fingerprint(key)
    if name is None:
        stem = Path(pub_path).name.removesuffix(PUBLIC_SUFFIX).removesuffix(".pem")
        name = stem if is_valid_key_name(stem) else key_fingerprint[:16]
    elif not is_valid_key_name(name):
        raise InvalidArgument(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    folder = Path(folder)
    for existing in list_trusted_keys(folder):
        if existing.fingerprint == key_fingerprint:
            raise WouldOverwrite(f"key {key_fingerprint} is already trusted as {existing.name!r}", path=pub_path)
    target = folder / f"{name}{PUBLIC_SUFFIX}"
    if target.exists() or target.is_symlink():
        raise WouldOverwrite(f"a different key is already trusted under the name {name!r}", path=target,
                             hint=Hint.OTHER_KEY_NAME)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise from_os_error(err, folder) from err
    with atomic_output(target, mode=0o644) as handle:
        handle.write(public_key_pem(key))
    return TrustedKey(name, key_fingerprint, target, key)


def list_trusted_keys(folder: str | os.PathLike) -> list[TrustedKey]:
    """Every key in the trust folder, by name; a file that is not a supported public key is refused."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    try:
        paths = sorted(p for p in folder.iterdir() if p.name.endswith(PUBLIC_SUFFIX))
    except OSError as err:
        raise from_os_error(err, folder) from err
    keys = []
    for path in paths:
        # A link could point a trust decision at a file outside the folder that someone else controls.
        if path.is_symlink() or not path.is_file():
            raise BadKey("is not a regular file; the trust folder holds only .pub files", path=path,
                         hint=Hint.ADD_TRUSTED_KEY)
        key = load_public_key(path)
        keys.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX), fingerprint(key), path, key))
    return keys


def remove_trusted_key(folder: str | os.PathLike, name_or_fingerprint: str) -> TrustedKey:
    """Remove the key named, or fingerprinted, ``name_or_fingerprint`` (see ``find_trusted_key``)."""
    target = find_trusted_key(folder, name_or_fingerprint)
    try:
        target.path.unlink()
    except OSError as err:
        raise from_os_error(err, target.path) from err
    return target


def find_trusted_key(folder: str | os.PathLike, name_or_fingerprint: str) -> TrustedKey:
    """The one trusted key ``name_or_fingerprint`` means: its exact name, its full fingerprint,
    or a prefix of at least 8 hex digits of exactly one key's fingerprint.

    A key is never picked by guessing: an argument that names one key and is also (a prefix
    of) another key's fingerprint is refused (InvalidArgument) with both candidates listed, and
    so is a prefix that several fingerprints share. No match at all is an EnvironmentProblem.
    """
    folder = Path(folder)
    wanted = name_or_fingerprint.strip()
    keys = list_trusted_keys(folder)
    candidates = [k for k in keys if k.name == wanted]
    if _FINGERPRINT_PREFIX.fullmatch(wanted):
        hex_digits = wanted.lower()
        by_fingerprint = [k for k in keys if k.fingerprint == hex_digits]
        by_fingerprint = by_fingerprint or [k for k in keys if k.fingerprint.startswith(hex_digits)]
        candidates += [k for k in by_fingerprint if k not in candidates]
    if not candidates:
        short = "" if len(wanted) >= MIN_FINGERPRINT_PREFIX or not wanted else (
            f" (a fingerprint prefix needs at least {MIN_FINGERPRINT_PREFIX} hex digits)")
        raise EnvironmentProblem(f"no trusted key named or fingerprinted {wanted!r}{short}", path=folder,
                                 hint=Hint.LIST_TRUSTED_KEYS)
    if len(candidates) > 1:
        listed = ", ".join(f"{k.name} ({k.fingerprint})" for k in candidates)
        raise InvalidArgument(f"{wanted!r} matches several trusted keys: {listed}; give a full name or a longer "
                              "fingerprint", path=folder)
    return candidates[0]


def load_trusted_keys(paths: Sequence[str | os.PathLike] = (),
                      folder: str | os.PathLike | None = None) -> list[TrustedKey]:
    """The key files ``paths``, then (only when ``folder`` is given) the trust folder's keys;
    each key once (by fingerprint)."""
    result: list[TrustedKey] = []
    seen: set[str] = set()
    for raw in paths:
        path = Path(raw)
        key = load_public_key(path)
        key_fingerprint = fingerprint(key)
        if key_fingerprint not in seen:
            seen.add(key_fingerprint)
            result.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX).removesuffix(".pem"), key_fingerprint,
                                     path, key))
    for trusted in (list_trusted_keys(folder) if folder is not None else []):
        if trusted.fingerprint not in seen:
            seen.add(trusted.fingerprint)
            result.append(trusted)
    return result
