"""The trust folder: the public keys whose signatures `nnseal install` accepts.

One canonical SPKI PEM per key, named NAME.pub, in $NNSEAL_TRUSTED_KEYS if set,
else $XDG_CONFIG_HOME/nnseal/trusted_keys, else ~/.config/nnseal/trusted_keys.
Keys are stored re-encoded (not copied), so a trusted file holds exactly one key
and nothing else. Torch-free.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from nnseal.errors import BadKey, EnvironmentProblem, WouldOverwrite, from_os_error
from nnseal.format.keys import PUBLIC_SUFFIX, fingerprint, load_public_key, public_key_pem
from nnseal.fsutil import atomic_output

TRUST_FOLDER_ENV = "NNSEAL_TRUSTED_KEYS"
# Names become file names: keep them portable and free of path separators.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_FINGERPRINT_PREFIX = 8


@dataclass(frozen=True)
class TrustedKey:
    name: str
    fingerprint: str
    path: Path
    key: ec.EllipticCurvePublicKey | None = field(default=None, compare=False, repr=False)


def trust_folder() -> Path:
    """Where trusted keys live (the folder need not exist yet)."""
    configured = os.environ.get(TRUST_FOLDER_ENV)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CONFIG_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".config"
    return base / "nnseal" / "trusted_keys"


def is_valid_key_name(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and not name.endswith(".")


def add_trusted_key(pub_path: str | os.PathLike, name: str | None = None) -> TrustedKey:
    """Copy a public key into the trust folder under NAME (default: the file's stem)."""
    key = load_public_key(pub_path)
    key_fingerprint = fingerprint(key)
    if name is None:
        stem = Path(pub_path).name.removesuffix(PUBLIC_SUFFIX).removesuffix(".pem")
        name = stem if is_valid_key_name(stem) else key_fingerprint[:16]
    elif not is_valid_key_name(name):
        raise ValueError(f"invalid key name {name!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    folder = trust_folder()
    for existing in list_trusted_keys():
        if existing.fingerprint == key_fingerprint:
            raise WouldOverwrite(f"key {key_fingerprint} is already trusted as {existing.name!r}", path=pub_path)
    target = folder / f"{name}{PUBLIC_SUFFIX}"
    if target.exists() or target.is_symlink():
        raise WouldOverwrite(f"a different key is already trusted under the name {name!r}; "
                             "choose another --name or `nnseal trust remove` it first", path=target)
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise from_os_error(err, folder) from err
    with atomic_output(target, mode=0o644) as handle:
        handle.write(public_key_pem(key))
    return TrustedKey(name, key_fingerprint, target, key)


def list_trusted_keys() -> list[TrustedKey]:
    """Every key in the trust folder, by name; a file that is not a supported public key is refused."""
    folder = trust_folder()
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
            raise BadKey("is not a regular file; the trust folder holds only .pub files written by "
                         "`nnseal trust add`", path=path)
        key = load_public_key(path)
        keys.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX), fingerprint(key), path, key))
    return keys


def remove_trusted_key(name_or_fingerprint: str) -> TrustedKey:
    """Remove the key with this name, fingerprint, or unique fingerprint prefix (8+ hex digits)."""
    wanted = name_or_fingerprint.strip()
    keys = list_trusted_keys()
    matches = [k for k in keys if k.name == wanted]
    if not matches and len(wanted) >= MIN_FINGERPRINT_PREFIX:
        matches = [k for k in keys if k.fingerprint.startswith(wanted.lower())]
    if not matches:
        raise EnvironmentProblem(f"no trusted key named or fingerprinted {wanted!r} "
                                 "(see `nnseal trust list`)", path=trust_folder())
    if len(matches) > 1:
        names = ", ".join(k.name for k in matches)
        raise EnvironmentProblem(f"{wanted!r} matches several trusted keys ({names}); give the full name",
                                 path=trust_folder())
    target = matches[0]
    try:
        target.path.unlink()
    except OSError as err:
        raise from_os_error(err, target.path) from err
    return target


def load_trusted_keys(extra_paths: Sequence[str | os.PathLike] = ()) -> list[TrustedKey]:
    """--trusted-key files first, then the trust folder; each key once (by fingerprint)."""
    result: list[TrustedKey] = []
    seen: set[str] = set()
    for raw in extra_paths:
        path = Path(raw)
        key = load_public_key(path)
        key_fingerprint = fingerprint(key)
        if key_fingerprint not in seen:
            seen.add(key_fingerprint)
            result.append(TrustedKey(path.name.removesuffix(PUBLIC_SUFFIX), key_fingerprint, path, key))
    for trusted in list_trusted_keys():
        if trusted.fingerprint not in seen:
            seen.add(trusted.fingerprint)
            result.append(trusted)
    return result
