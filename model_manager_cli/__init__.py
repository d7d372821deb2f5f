"""The human CLI ``model-manager``: a JSON-RPC client of a sidecar it launches itself."""
