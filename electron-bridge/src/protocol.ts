// The sidecar protocol version this bridge is built for: getInfo's protocolVersion must
// equal it (sidecar/__init__.py PROTOCOL_VERSION; the handshake test checks the real one).
export const PROTOCOL_VERSION = 1;
