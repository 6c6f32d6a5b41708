"""nnseal: safety-first export, signing and verified install of trained nnU-Net models.

Stages, each importable on its own: ``nnseal.sanitize`` -> ``nnseal.package`` -> ``nnseal.verify``.
Importing this package imports nothing heavy (no torch).
"""

__version__ = "0.2.0"
