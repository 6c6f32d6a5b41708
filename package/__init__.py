"""Package stage: lay sanitized models out as an nnU-Net-shaped zip and sign it (OpenSSF Model Signing)."""
