"""One module per CLI command. Each parses, calls the library, prints; nothing more."""
