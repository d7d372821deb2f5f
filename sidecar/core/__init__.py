"""Tasks, the library and the catalog: what the sidecar knows and decides."""
