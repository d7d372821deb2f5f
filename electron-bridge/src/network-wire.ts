// HAND-WRITTEN WIRE TYPES — to be replaced by the generated type.
// The sidecar's `setNetwork` method is not in ../schemas yet. When it is, `make schemas`
// generates SetNetworkParams / SetNetworkResult into src/generated/wire.ts; then delete
// this file, import them from './types.js', and let ModelManagerClient.setNetwork use
// `this.call('setNetwork', …)` like every other method.

/** `proxy`: a proxy URL; "" or "direct" = no proxy; null = back to the environment's settings. */
export interface SetNetworkParams {
  proxy: string | null;
}

/** What the sidecar now uses, credentials redacted. */
export interface SetNetworkResult {
  proxy: string | null;
}

export const SET_NETWORK_METHOD = 'setNetwork';
