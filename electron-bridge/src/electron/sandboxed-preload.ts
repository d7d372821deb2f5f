// The preload the package ships prebuilt as dist/preload.cjs: with `sandbox: true` a
// preload is one CommonJS script that may require('electron') and nothing else, so
// scripts/build-preload.mjs bundles this file with everything it uses. Point
// webPreferences.preload at '@model-manager/electron-bridge/preload.cjs'.
import { contextBridge, ipcRenderer } from 'electron';
import { exposeModelManager } from './preload.js';

exposeModelManager(contextBridge, ipcRenderer);
