"""A SoftHSM2 token made in a temporary folder, with an EC P-256 key pair generated inside it
(the private key is never outside the token, as on a real HSM). Needs the softhsm2 package
(apt) and PyKCS11 (nnseal[pkcs11]).

PyKCS11 runs in child processes only: once another SWIG module with the same runtime
(SimpleITK, which nnU-Net's tests load) is in a process, PyKCS11's std::vector arguments are
refused (TypeError in C_Login). Running `python tests/softhsm.py FOLDER` makes the token."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

MODULE = "/usr/lib/softhsm/libsofthsm2.so"
TOKEN = "nnseal-test"  # noqa: S105 (a token's label)
LABEL = "signing-key"
PIN = "1234"  # noqa: S105 (a throwaway test token's PIN)


@dataclass
class Token:
    conf: Path
    uri: str


def make_token(folder: Path, monkeypatch) -> Token:
    tokens = folder / "tokens"
    tokens.mkdir(parents=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    monkeypatch.setenv("SOFTHSM2_CONF", str(conf))
    subprocess.run([sys.executable, __file__], check=True, env=dict(os.environ), timeout=120)
    uri = f"pkcs11:token={TOKEN};object={LABEL}?module-path={MODULE}&pin-value={PIN}"
    return Token(conf, uri)


def token_public_pem(uri: str) -> bytes:
    """The token key's public key (SPKI PEM), read by nnseal's own PKCS#11 code in a child process."""
    code = ("import sys; from nnseal.format.keys import public_key_pem; "
            "from nnseal.package.pkcs11_signing import open_pkcs11_key; "
            "sys.stdout.buffer.write(public_key_pem(open_pkcs11_key(sys.argv[1]).public_key()))")
    return subprocess.run([sys.executable, "-c", code, uri], check=True, capture_output=True, timeout=120).stdout


def _generate() -> None:
    import PyKCS11

    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", TOKEN, "--pin", PIN, "--so-pin", "5678"],
                   check=True, capture_output=True)
    library = PyKCS11.PyKCS11Lib()
    library.load(MODULE)
    slot = next(s for s in library.getSlotList(tokenPresent=True) if library.getTokenInfo(s).label.strip() == TOKEN)
    session = library.openSession(slot, PyKCS11.CKF_SERIAL_SESSION | PyKCS11.CKF_RW_SESSION)
    session.login(PIN)
    p256 = bytes.fromhex("06082a8648ce3d030107")  # the named curve prime256v1, DER
    common = [(PyKCS11.CKA_TOKEN, PyKCS11.CK_TRUE), (PyKCS11.CKA_LABEL, LABEL), (PyKCS11.CKA_ID, (1,))]
    session.generateKeyPair(
        [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PUBLIC_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
         (PyKCS11.CKA_EC_PARAMS, p256), (PyKCS11.CKA_VERIFY, PyKCS11.CK_TRUE), *common],
        [(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY), (PyKCS11.CKA_KEY_TYPE, PyKCS11.CKK_EC),
         (PyKCS11.CKA_SIGN, PyKCS11.CK_TRUE), (PyKCS11.CKA_SENSITIVE, PyKCS11.CK_TRUE),
         (PyKCS11.CKA_EXTRACTABLE, PyKCS11.CK_FALSE), (PyKCS11.CKA_PRIVATE, PyKCS11.CK_TRUE), *common],
        mecha=PyKCS11.MechanismECGENERATEKEYPAIR)
    session.logout()
    session.closeSession()


if __name__ == "__main__":
    _generate()
