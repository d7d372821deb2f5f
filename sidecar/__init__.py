"""ModelManager sidecar: owns the local model library, spoken to over JSON-RPC on stdio."""

__version__ = "0.1.0"
PROTOCOL_VERSION = 1
