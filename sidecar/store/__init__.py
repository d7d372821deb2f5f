"""The home on disk: its layout, the registry, locks and atomic placement."""
