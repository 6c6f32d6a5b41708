"""model.sig: statement, signing, and a verifier that refuses every altered field.

Each hostile bundle is built in code by a generator named after its attack.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from manifest_helpers import deterministic_signing_supported, resource_differences

from nnseal.errors import EXIT_REFUSED, Hint, InvalidArgument, SignatureError, UntrustedSigner
from nnseal.format import keys, oms
from nnseal.format.keys import fingerprint
from nnseal.format.limits import MAX_BUNDLE_BYTES
from nnseal.package import signing
from nnseal.verify.signature import read_bundle_unverified, verify_bundle


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


RESOURCES = {
    "Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/plans.json": digest(b"plans"),
    "Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/dataset.json": digest(b"dataset"),
    "Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.safetensors": digest(b"weights"),
    "Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/fold_0.json": digest(b"a sibling sorting differently"),
    "nnseal.json": digest(b"card"),
}


@pytest.fixture(scope="module")
def signer() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def stranger() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def bundle(signer) -> bytes:
    return signing.sign_manifest("toy", RESOURCES, signer)


def as_dict(bundle: bytes) -> dict:
    return json.loads(bundle)


def to_bytes(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def statement_of(bundle: bytes) -> dict:
    return json.loads(base64.b64decode(as_dict(bundle)["dsseEnvelope"]["payload"]))


def assert_signature_error(bundle: bytes, keys, *needles: str) -> SignatureError:
    with pytest.raises(SignatureError) as err:
        verify_bundle(bundle, keys)
    assert type(err.value) is SignatureError, f"expected a bad-signature refusal, got {type(err.value).__name__}"
    assert err.value.exit_code == EXIT_REFUSED and "\n" not in str(err.value)
    assert oms.SIGNATURE_NAME in str(err.value)
    for needle in needles:
        assert needle in str(err.value)
    return err.value


# --- statement and signing ---------------------------------------------------------------


def test_root_digest_is_sha256_over_raw_digests_in_path_component_order():
    names = oms.canonical_order(RESOURCES)
    # model_signing sorts PurePosixPath keys: "fold_0/..." before "fold_0.json" although "." < "/".
    assert names.index("Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/fold_0/checkpoint_final.safetensors") \
        < names.index("Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/fold_0.json")
    expected = hashlib.sha256(b"".join(bytes.fromhex(RESOURCES[n]) for n in names)).hexdigest()
    assert oms.root_digest(RESOURCES) == expected
    assert oms.root_digest(dict(reversed(list(RESOURCES.items())))) == expected


def test_statement_has_the_oms_v1_shape():
    statement = oms.build_statement("toy", RESOURCES)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["subject"] == [{"name": "toy", "digest": {"sha256": oms.root_digest(RESOURCES)}}]
    listed = statement["predicate"]["resources"]
    assert [r["name"] for r in listed] == oms.canonical_order(RESOURCES)
    assert all(r["algorithm"] == "sha256" and r["digest"] == RESOURCES[r["name"]] for r in listed)
    assert statement["predicate"]["serialization"] == {
        "method": "files", "hash_type": "sha256", "allow_symlinks": False, "ignore_paths": ["model.sig"]}


def test_bundle_has_the_sigstore_key_method_shape(signer, bundle):
    doc = as_dict(bundle)
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert doc["verificationMaterial"] == {"publicKey": {"hint": fingerprint(signer.public_key())},
                                           "tlogEntries": []}
    envelope = doc["dsseEnvelope"]
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    assert len(envelope["signatures"]) == 1 and envelope["signatures"][0]["keyid"] == ""
    payload = base64.b64decode(envelope["payload"])
    assert json.loads(payload) == oms.build_statement("toy", RESOURCES)
    # DER ECDSA over the DSSE PAE, checked here with cryptography directly.
    message = b"DSSEv1 28 application/vnd.in-toto+json %d %s" % (len(payload), payload)
    signer.public_key().verify(base64.b64decode(envelope["signatures"][0]["sig"]), message,
                               ec.ECDSA(oms.hash_for_curve(signer.curve)))


def test_signing_is_deterministic(signer, bundle):
    assert deterministic_signing_supported()
    assert signing.sign_manifest("toy", RESOURCES, signer) == bundle
    reordered = dict(sorted(RESOURCES.items(), reverse=True))
    assert signing.sign_manifest("toy", reordered, signer) == bundle
    changed = dict(RESOURCES, **{"nnseal.json": digest(b"other card")})
    assert signing.sign_manifest("toy", changed, signer) != bundle


def test_deterministic_across_processes(tmp_path, signer, bundle):
    from cryptography.hazmat.primitives import serialization

    key_file = tmp_path / "k.pem"
    key_file.write_bytes(signer.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    code = ("import sys, json; from nnseal.format import keys; from nnseal.package import signing; "
            "r = json.loads(sys.argv[2]); "
            "sys.stdout.buffer.write(signing.sign_manifest('toy', r, keys.load_private_key(sys.argv[1])))")
    # Another process has another hash seed: set/dict ordering cannot leak into the bytes.
    out = subprocess.run([sys.executable, "-c", code, str(key_file), json.dumps(RESOURCES)],
                         capture_output=True, check=True, timeout=120, env={"PYTHONHASHSEED": "12345"}).stdout
    assert out == bundle


@pytest.mark.parametrize("curve", [ec.SECP384R1(), ec.SECP521R1()])
def test_p384_and_p521_sign_and_verify(curve):
    key = ec.generate_private_key(curve)
    manifest = verify_bundle(signing.sign_manifest("toy", RESOURCES, key), [key.public_key()])
    assert manifest.verified and manifest.resources == RESOURCES


@pytest.mark.parametrize("bad", ["../escape", "/abs", "a\\b", "a//b", "./a", "a/", "", "C:x", "a\x00b", "."])
def test_signer_refuses_unsafe_resource_names(signer, bad):
    with pytest.raises(InvalidArgument):
        signing.sign_manifest("toy", {bad: digest(b"x")}, signer)


def test_signer_refuses_malformed_digests(signer):
    with pytest.raises(InvalidArgument):
        signing.sign_manifest("toy", {"a": digest(b"x").upper()}, signer)


# --- the happy path ----------------------------------------------------------------------


def test_verify_returns_the_signed_resources(signer, stranger, bundle):
    manifest = verify_bundle(bundle, [stranger.public_key(), signer.public_key()])
    assert manifest.verified
    assert manifest.model_name == "toy"
    assert manifest.resources == RESOURCES
    assert manifest.signer_fingerprint == fingerprint(signer.public_key())
    assert manifest.ignore_paths == ["model.sig"]


def test_read_unverified_parses_without_checking_the_signature(signer, bundle):
    doc = as_dict(bundle)
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()
    manifest = read_bundle_unverified(to_bytes(doc))
    assert not manifest.verified
    assert manifest.resources == RESOURCES
    assert manifest.signer_fingerprint == fingerprint(signer.public_key())
    with pytest.raises(SignatureError):
        read_bundle_unverified(b"{}")


# --- trust -------------------------------------------------------------------------------


def test_no_trusted_keys_means_untrusted(bundle):
    with pytest.raises(UntrustedSigner, match="no trusted keys") as err:
        verify_bundle(bundle, [])
    assert err.value.hint is Hint.TRUST_SIGNER


def test_signer_not_trusted_is_named_with_how_to_trust_it(signer, stranger, bundle):
    with pytest.raises(UntrustedSigner) as err:
        verify_bundle(bundle, [stranger.public_key()])
    assert fingerprint(signer.public_key()) in str(err.value)
    assert err.value.hint is Hint.TRUST_SIGNER
    assert err.value.fingerprint == fingerprint(signer.public_key())


def resigned_by_untrusted_key(bundle: bytes, stranger) -> bytes:
    """Attack: edit the manifest (swap the weights' digest) and sign it with the attacker's own key."""
    statement = statement_of(bundle)
    statement["predicate"]["resources"][0]["digest"] = digest(b"evil weights")
    statement["subject"][0]["digest"]["sha256"] = oms.root_digest_in_order(
        r["digest"] for r in statement["predicate"]["resources"])
    return signing.sign_statement(statement, stranger)


def resigned_keeping_the_trusted_hint(bundle: bytes, signer, stranger) -> bytes:
    """Attack: as above, but leave the trusted signer's hint in place to pass a hint-only check."""
    doc = as_dict(resigned_by_untrusted_key(bundle, stranger))
    doc["verificationMaterial"]["publicKey"]["hint"] = fingerprint(signer.public_key())
    return to_bytes(doc)


def test_manifest_resigned_by_untrusted_key_is_refused(signer, stranger, bundle):
    with pytest.raises(UntrustedSigner, match=fingerprint(stranger.public_key())):
        verify_bundle(resigned_by_untrusted_key(bundle, stranger), [signer.public_key()])
    assert_signature_error(resigned_keeping_the_trusted_hint(bundle, signer, stranger), [signer.public_key()],
                           "does not verify")


def test_valid_signature_from_another_package_does_not_cover_these_files(signer):
    """Attack: ship a genuine model.sig taken from another package beside different files."""
    other_package = {"Dataset002_Other/model/plans.json": digest(b"other plans")}
    foreign = signing.sign_manifest("other", other_package, signer)
    manifest = verify_bundle(foreign, [signer.public_key()])  # genuine, so it verifies ...
    problems = resource_differences(manifest.resources, RESOURCES)  # ... but it signs other files
    assert len(problems) == len(RESOURCES) + 1
    assert any("not covered by the signature" in p for p in problems)
    assert any("signed but missing" in p for p in problems)


def test_resource_differences_lists_added_missing_and_changed():
    actual = dict(RESOURCES)
    actual.pop("nnseal.json")
    actual["extra.bin"] = digest(b"x")
    actual["Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/plans.json"] = digest(b"edited")
    assert resource_differences(RESOURCES, actual) == [
        "extra.bin: not covered by the signature",
        "nnseal.json: signed but missing",
        "Dataset001_Toy/nnUNetTrainer__nnUNetPlans__2d/plans.json: sha256 differs from the signed digest",
    ]
    assert resource_differences(RESOURCES, dict(RESOURCES)) == []


# --- every field of the bundle, altered ----------------------------------------------------


def edit(bundle: bytes, change) -> bytes:
    doc = copy.deepcopy(as_dict(bundle))
    change(doc)
    return to_bytes(doc)


def flipped_payload_byte(doc):
    payload = bytearray(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    at = payload.index(b"checkpoint_final")
    payload[at] ^= 0x01
    doc["dsseEnvelope"]["payload"] = base64.b64encode(bytes(payload)).decode()


def flipped_signature_byte(doc):
    sig = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def truncated_signature(doc):
    sig = base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"])
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(sig[:-5]).decode()


def hint_of_another_key(doc):
    doc["verificationMaterial"]["publicKey"]["hint"] = digest(b"someone else")


TAMPERINGS = {
    "payload byte": (flipped_payload_byte, "does not verify"),
    "signature byte": (flipped_signature_byte, "does not verify"),
    "signature truncated": (truncated_signature, "does not verify"),
    "hint swapped": (hint_of_another_key, "bundle was altered"),
    "hint malformed": (lambda d: d["verificationMaterial"]["publicKey"].update(hint="zz"), "hint"),
    "mediaType": (lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v0.2+json"), "mediaType"),
    "payloadType": (lambda d: d["dsseEnvelope"].update(payloadType="application/json"), "payloadType"),
    "tlogEntries": (lambda d: d["verificationMaterial"].update(tlogEntries=[{"logIndex": "1"}]), "tlogEntries"),
    "certificate": (lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AA=="}), "certificate"),
    "second signature": (lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]),
                         "exactly one signature"),
    "no signatures": (lambda d: d["dsseEnvelope"].update(signatures=[]), "exactly one signature"),
    "keyid not a string": (lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid=7), "keyid"),
    "unknown bundle field": (lambda d: d.update(messageSignature={}), "unexpected field"),
    "payload not base64": (lambda d: d["dsseEnvelope"].update(payload="@@@@"), "not valid base64"),
    "payload non-canonical base64": (
        lambda d: d["dsseEnvelope"].update(payload=d["dsseEnvelope"]["payload"] + "===="), "base64"),
    "payload missing": (lambda d: d["dsseEnvelope"].pop("payload"), "lacks payload"),
    "publicKey missing": (lambda d: d["verificationMaterial"].pop("publicKey"),
                          "exactly one of certificate, publicKey"),
    "non-empty tlogEntries": (lambda d: d["verificationMaterial"].update(tlogEntries=[{}]), "tlogEntries"),
    "hint not hex": (lambda d: d["verificationMaterial"]["publicKey"].update(hint="zz"), "hint"),
    "unknown publicKey field": (lambda d: d["verificationMaterial"]["publicKey"].update(x=1), "unexpected field"),
}


@pytest.mark.parametrize("name", sorted(TAMPERINGS))
def test_every_altered_bundle_field_is_refused(signer, bundle, name):
    change, needle = TAMPERINGS[name]
    assert_signature_error(edit(bundle, change), [signer.public_key()], needle)


def test_keyid_is_unsigned_and_ignored_like_model_signing(signer, bundle):
    altered = edit(bundle, lambda d: d["dsseEnvelope"]["signatures"][0].update(keyid="anything"))
    assert verify_bundle(altered, [signer.public_key()]).signer_fingerprint == fingerprint(signer.public_key())


def test_missing_hint_still_verifies_but_cannot_name_an_unknown_signer(signer, stranger, bundle):
    no_hint = edit(bundle, lambda d: d["verificationMaterial"]["publicKey"].pop("hint"))
    assert verify_bundle(no_hint, [signer.public_key()]).signer_fingerprint == fingerprint(signer.public_key())
    with pytest.raises(UntrustedSigner, match="does not name"):
        verify_bundle(no_hint, [stranger.public_key()])


# --- every field of the statement, altered and re-signed by the trusted key ----------------


def resources_of(statement):
    return statement["predicate"]["resources"]


def resource_entry(name: str) -> dict:
    return {"name": name, "algorithm": "sha256", "digest": digest(name.encode())}


def with_resources(statement, entries):
    statement["predicate"]["resources"] = entries
    statement["subject"][0]["digest"]["sha256"] = oms.root_digest_in_order(e["digest"] for e in entries)


STATEMENT_EDITS = {
    "_type": (lambda s: s.update(_type="https://in-toto.io/Statement/v0.1"), "_type"),
    "predicateType": (lambda s: s.update(predicateType="https://model_signing/Digests/v0.1"), "predicateType"),
    "subject digest": (lambda s: s["subject"][0]["digest"].update(sha256=digest(b"x")), "inconsistent"),
    "two subjects": (lambda s: s["subject"].append(s["subject"][0]), "exactly one"),
    "subject name not text": (lambda s: s["subject"][0].update(name=["toy"]), "subject[0].name"),
    "method shards": (lambda s: s["predicate"]["serialization"].update(method="shards"), "method"),
    "hash blake3": (lambda s: s["predicate"]["serialization"].update(hash_type="blake3"), "hash type"),
    "allow_symlinks text": (lambda s: s["predicate"]["serialization"].update(allow_symlinks="false"),
                            "allow_symlinks"),
    "ignore_paths not list": (lambda s: s["predicate"]["serialization"].update(ignore_paths="model.sig"),
                              "ignore_paths"),
    "resource algorithm": (lambda s: resources_of(s)[0].update(algorithm="md5"), "algorithm"),
    "resource digest uppercase": (lambda s: resources_of(s)[0].update(digest=resources_of(s)[0]["digest"].upper()),
                                  "64 lowercase hex"),
    "dot-dot name": (lambda s: with_resources(s, [resource_entry("a/../../etc/passwd")]), "'..'"),
    "absolute name": (lambda s: with_resources(s, [resource_entry("/etc/passwd")]), "absolute"),
    "backslash name": (lambda s: with_resources(s, [resource_entry("a\\..\\b")]), "backslash"),
    "duplicate name": (lambda s: with_resources(s, [resource_entry("a"), resource_entry("a")]), "twice"),
    "case collision": (lambda s: with_resources(s, [resource_entry("A.json"), resource_entry("a.json")]),
                       "case-insensitive"),
    "single-file '.' among others": (lambda s: with_resources(s, [resource_entry("."), resource_entry("a")]),
                                     "'.' component"),
    "ignore path '..'": (lambda s: s["predicate"]["serialization"].update(ignore_paths=["a/../.."]), "'..'"),
    "ignore path absolute": (lambda s: s["predicate"]["serialization"].update(ignore_paths=["/etc"]), "relative"),
    "resources not a list": (lambda s: s["predicate"].update(resources={}), "resources"),
    "unknown statement field": (lambda s: s.update(extra=1), "unexpected field"),
}


@pytest.mark.parametrize("name", sorted(STATEMENT_EDITS))
def test_every_malformed_statement_field_is_refused_even_when_signed(signer, bundle, name):
    change, needle = STATEMENT_EDITS[name]
    statement = statement_of(bundle)
    change(statement)
    assert_signature_error(signing.sign_statement(statement, signer), [signer.public_key()], needle)


def test_extra_resource_descriptor_fields_are_ignored_as_the_spec_says(signer, bundle):
    """Spec 5.2.1: in-toto ResourceDescriptor fields OMS does not use (uri, annotations...) are ignored."""
    statement = statement_of(bundle)
    for entry in resources_of(statement):
        entry.update(uri="https://example.org/x", annotations={"size": 3}, mediaType="application/octet-stream")
    assert verify_bundle(signing.sign_statement(statement, signer), [signer.public_key()]).resources == RESOURCES


@pytest.mark.parametrize("keyid", [None, "", "k1", "absent"])
def test_keyid_absent_empty_or_null_is_accepted_as_the_spec_says(signer, bundle, keyid):
    doc = json.loads(bundle)
    if keyid == "absent":
        del doc["dsseEnvelope"]["signatures"][0]["keyid"]
    else:
        doc["dsseEnvelope"]["signatures"][0]["keyid"] = keyid
    assert verify_bundle(json.dumps(doc).encode(), [signer.public_key()]).verified


def test_pre_1_1_bundles_name_the_key_by_raw_bytes_and_carry_timestamp_data(signer, bundle):
    """model_signing 0.3.1-1.0.x: publicKey {rawBytes, keyDetails}, no tlogEntries; the spec also lets
    key bundles carry timestampVerificationData, which the key method ignores."""
    doc = json.loads(bundle)
    pem = keys.public_key_pem(signer.public_key())
    doc["verificationMaterial"] = {"publicKey": {"rawBytes": base64.b64encode(pem).decode(),
                                                 "keyDetails": "PKIX_ECDSA_P256_SHA_256"},
                                   "timestampVerificationData": {"rfc3161Timestamps": []}}
    manifest = verify_bundle(json.dumps(doc).encode(), [signer.public_key()])
    assert manifest.verified and manifest.signer_fingerprint == keys.fingerprint(signer.public_key())


def test_a_resource_named_model_sig_is_a_resource(signer, bundle):
    """model_signing signs a folder's model.sig when the new signature goes elsewhere (--signature)."""
    statement = statement_of(bundle)
    with_resources(statement, [resource_entry("model.sig"), resource_entry("weights.bin")])
    manifest = verify_bundle(signing.sign_statement(statement, signer), [signer.public_key()])
    assert set(manifest.resources) == {"model.sig", "weights.bin"}


def test_unknown_predicate_fields_are_ignored_as_the_spec_says(signer, bundle):
    statement = statement_of(bundle)
    statement["predicate"]["model_card"] = {"future": "extension"}
    assert verify_bundle(signing.sign_statement(statement, signer), [signer.public_key()]).resources == RESOURCES


def test_resources_listed_out_of_order_verify_as_model_signing_does(signer, bundle):
    statement = statement_of(bundle)
    with_resources(statement, list(reversed(resources_of(statement))))
    assert verify_bundle(signing.sign_statement(statement, signer), [signer.public_key()]).resources == RESOURCES


# --- hostile bytes -------------------------------------------------------------------------


def oversized_bundle() -> bytes:
    return b" " * (MAX_BUNDLE_BYTES + 1)


def json_with_duplicate_keys(bundle: bytes) -> bytes:
    """Attack: two mediaType keys, so two parsers could see two different bundles."""
    return bundle.replace(b'{"mediaType"', b'{"mediaType":"x","mediaType"', 1)


def deeply_nested_json() -> bytes:
    return b"[" * 200_000 + b"]" * 200_000


def nan_in_json(bundle: bytes) -> bytes:
    return bundle[:-1] + b',"x":NaN}'


def payload_with_duplicate_keys(bundle: bytes, signer) -> bytes:
    """Attack: a signed statement whose JSON has two `resources` arrays."""
    payload = oms.statement_bytes(statement_of(bundle))
    payload = payload.replace(b'"predicate": {', b'"predicate": {"resources": [], ', 1)
    doc = as_dict(bundle)
    doc["dsseEnvelope"]["payload"] = base64.b64encode(payload).decode()
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(
        signer.sign(oms.pae(oms.PAYLOAD_TYPE, payload), ec.ECDSA(oms.hash_for_curve(signer.curve)))).decode()
    return to_bytes(doc)


def test_hostile_bytes_are_refused(signer, bundle):
    key = [signer.public_key()]
    assert_signature_error(oversized_bundle(), key, "larger than")
    assert_signature_error(b"\xff\xfe not utf-8", key, "UTF-8")
    assert_signature_error(b"", key, "not valid JSON")
    assert_signature_error(b"[]", key, "not a JSON object")
    assert_signature_error(json_with_duplicate_keys(bundle), key, "duplicate key")
    assert_signature_error(deeply_nested_json(), key)
    assert_signature_error(nan_in_json(bundle), key, "NaN")
    assert_signature_error(payload_with_duplicate_keys(bundle, signer), key, "duplicate key")
