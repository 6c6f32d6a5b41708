"""ECDSA signing keys: make them, load them (ours or openssl's), and name them by fingerprint.

OpenSSF Model Signing's key method accepts ECDSA on P-256, P-384 and P-521 only,
so those are the only keys nnseal takes. The fingerprint is the OMS "hint": the
hex sha256 of the SubjectPublicKeyInfo PEM, as model_signing computes it.
Torch-free: signature code must stay light.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa, x448, x25519

from nnseal.errors import BadKey, EnvironmentProblem, Hint, InvalidArgument, WouldOverwrite, from_os_error
from nnseal.format.limits import MAX_KEY_FILE_BYTES
from nnseal.fsutil import atomic_output

PRIVATE_SUFFIX = ".pem"
PUBLIC_SUFFIX = ".pub"
SUPPORTED_CURVES = ("secp256r1", "secp384r1", "secp521r1")
SUPPORTED_TEXT = "nnseal signs with ECDSA P-256/384/521"

_KIND_NAMES = (
    (rsa.RSAPrivateKey, "an RSA"), (rsa.RSAPublicKey, "an RSA"),
    (ed25519.Ed25519PrivateKey, "an Ed25519"), (ed25519.Ed25519PublicKey, "an Ed25519"),
    (ed448.Ed448PrivateKey, "an Ed448"), (ed448.Ed448PublicKey, "an Ed448"),
    (dsa.DSAPrivateKey, "a DSA"), (dsa.DSAPublicKey, "a DSA"),
    (x25519.X25519PrivateKey, "an X25519"), (x25519.X25519PublicKey, "an X25519"),
    (x448.X448PrivateKey, "an X448"), (x448.X448PublicKey, "an X448"),
)


@dataclass(frozen=True)
class KeyFiles:
    private_path: Path
    public_path: Path
    fingerprint: str


def public_key_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM: the exact bytes the OMS hint is computed over."""
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def fingerprint(public_key: ec.EllipticCurvePublicKey) -> str:
    """Hex sha256 of the public key PEM (model_signing's `verificationMaterial.publicKey.hint`)."""
    return hashlib.sha256(public_key_pem(public_key)).hexdigest()


def generate_key_pair(prefix: str | os.PathLike, passphrase: bytes | None = None) -> KeyFiles:
    """Write PREFIX.pem (PKCS#8, mode 0600, encrypted if a passphrase is given) and PREFIX.pub.

    A PREFIX ending in .pem or .pub names the pair as well (``lab.pem`` writes lab.pem and
    lab.pub, not lab.pem.pem); missing parent folders are created, readable by the owner only.
    """
    base = os.fspath(prefix)
    for suffix in (PRIVATE_SUFFIX, PUBLIC_SUFFIX):
        if base.endswith(suffix) and len(base) > len(suffix) and not base.endswith(os.sep + suffix):
            base = base[:-len(suffix)]
    private_path = Path(base + PRIVATE_SUFFIX)
    public_path = Path(base + PUBLIC_SUFFIX)
    for path in (private_path, public_path):
        if path.exists() or path.is_symlink():
            raise WouldOverwrite("exists; nnseal never overwrites key files", path=path, hint=Hint.OTHER_PATH)
    if passphrase is not None and not passphrase:
        raise BadKey("empty passphrase; give a non-empty one or none at all", path=private_path)

    _make_parents(private_path.parent)
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = (serialization.BestAvailableEncryption(passphrase) if passphrase
                  else serialization.NoEncryption())
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)

    with atomic_output(private_path, mode=0o600) as handle:
        handle.write(private_pem)
    try:
        with atomic_output(public_path, mode=0o644) as handle:
            handle.write(public_key_pem(key.public_key()))
    except BaseException:
        # Half a key pair is worse than none: the user would re-run and hit "exists".
        private_path.unlink(missing_ok=True)
        raise
    return KeyFiles(private_path, public_path, fingerprint(key.public_key()))


def private_key_is_encrypted(path: str | os.PathLike) -> bool:
    """Whether the PEM private key file at ``path`` is encrypted (PKCS#8 or openssl's legacy
    ``Proc-Type: 4,ENCRYPTED``): whether loading it needs a passphrase."""
    return _is_encrypted(_read_key_file(path))


def _is_encrypted(data: bytes) -> bool:
    return b"ENCRYPTED" in data


def load_private_key(path: str | os.PathLike, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PEM private key (PKCS#8 or openssl's SEC1 "EC PRIVATE KEY") and check it can sign OMS.

    A passphrase for a key that is not encrypted is refused: it means the wrong key file.
    """
    data = _read_key_file(path)
    encrypted = _is_encrypted(data)
    if passphrase is not None and not encrypted and b"PRIVATE KEY" in data:
        raise InvalidArgument("is not encrypted, but a passphrase was given for it", path=path)
    try:
        key = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except TypeError:
        # cryptography raises TypeError only when a passphrase is needed and missing.
        raise BadKey("is encrypted; give its passphrase", path=path, hint=Hint.PASSPHRASE) from None
    except ValueError:
        if encrypted and passphrase:
            raise BadKey("wrong passphrase (or the encrypted key is damaged)", path=path) from None
        if b"PUBLIC KEY" in data and b"PRIVATE KEY" not in data:
            raise BadKey("is a public key; signing needs the private key (.pem)", path=path) from None
        raise BadKey("is not a PEM private key", path=path) from None
    except UnsupportedAlgorithm:
        raise BadKey(f"uses an unsupported key algorithm; {SUPPORTED_TEXT}", path=path) from None
    _check_supported(key, path)
    return cast(ec.EllipticCurvePrivateKey, key)


def load_public_key(path: str | os.PathLike) -> ec.EllipticCurvePublicKey:
    """Load a SubjectPublicKeyInfo PEM public key (what `openssl ec -pubout` writes)."""
    data = _read_key_file(path)
    if b"PRIVATE KEY" in data:
        # Never copy a private key into a trust store or print it: ask for the .pub file.
        raise BadKey("is a private key; give the public key (.pub) instead", path=path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise BadKey("is not a PEM public key", path=path) from None
    except UnsupportedAlgorithm:
        raise BadKey(f"uses an unsupported key algorithm; {SUPPORTED_TEXT}", path=path) from None
    _check_supported(key, path)
    return cast(ec.EllipticCurvePublicKey, key)


def parse_public_key(pem: bytes) -> ec.EllipticCurvePublicKey | None:
    """A supported public key from PEM bytes found inside a document, or None (never raises)."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in SUPPORTED_CURVES:
        return key
    return None


def signing_key(key: str | os.PathLike | ec.EllipticCurvePrivateKey | None,
                passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """A loaded private key as it is (checked it can sign OMS), or one loaded from a PEM path."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        _check_supported(key, "signing key")
        return key
    if key is None or os.fspath(key) == "":
        raise BadKey("no signing key", hint=Hint.SIGNING_KEY)
    return load_private_key(key, passphrase)


def _make_parents(folder: Path) -> None:
    """Create ``folder`` and its missing parents with mode 0700 (a folder made for keys is private)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
            path.chmod(0o700)  # mkdir's mode passes through the umask
        except FileExistsError:
            continue
        except OSError as err:
            raise from_os_error(err, path) from err


def _read_key_file(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_KEY_FILE_BYTES + 1)
    except IsADirectoryError:
        raise EnvironmentProblem("is a directory, not a key file", path=path) from None
    except OSError as err:
        raise from_os_error(err, path) from err
    if len(data) > MAX_KEY_FILE_BYTES:
        raise BadKey(f"is larger than {MAX_KEY_FILE_BYTES // 1024} KiB: not a PEM key", path=path)
    return data


def _check_supported(key, path: str | os.PathLike) -> None:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        if key.curve.name not in SUPPORTED_CURVES:
            raise BadKey(f"is an ECDSA key on curve {key.curve.name}; {SUPPORTED_TEXT} "
                         f"({', '.join(SUPPORTED_CURVES)})", path=path)
        return
    kind = next((name for cls, name in _KIND_NAMES if isinstance(key, cls)), "a non-ECDSA")
    raise BadKey(f"is {kind} key; {SUPPORTED_TEXT}", path=path)
