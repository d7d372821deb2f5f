// `window.modelManager` for the page's type checker: import type {} from
// '@model-manager/electron-bridge/window' once (or list it in tsconfig "types").
import type { ModelManagerBridge } from './electron/preload.js';

declare global {
  interface Window {
    /** Put there by the bridge's preload (dist/preload.cjs or exposeModelManager). */
    modelManager: ModelManagerBridge;
  }
}

export {};
