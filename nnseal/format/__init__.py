"""The nnseal package format, shared by the writer (``nnseal.package``) and every reader.

Like python-tuf's ``tuf/api``: what a package is, in one place, imported by both sides.

- ``layout``: entry names a package may hold and how they map to nnU-Net's results tree;
- ``card``: ``nnseal-card.json`` (build, parse, ``format_version`` check);
- ``checkpoint_meta``: the nnseal keys in each safetensors ``__metadata__`` (one writer, one validator);
- ``oms``: the OpenSSF Model Signing statement and bundle (serialize and parse);
  ``nnseal.package.signing`` signs and ``nnseal.verify.signature`` verifies on top of it;
- ``keys`` and ``trust``: signing keys, fingerprints and the trust folder;
- ``limits``: size limits and I/O sizes; ``digest``: sha256 text; ``strict_json``: the one loader
  for untrusted JSON.

Torch-free; nothing here reads the environment.
"""
