// The wire types, generated from ../schemas, plus a few names derived from them.
export * from './generated/wire.js';
import type { ErrorData, ModelInfo } from './generated/wire.js';

/** The state of a model (or one installed version of it). */
export type ModelState = ModelInfo['state'];
/** Why getModelPath refused: MODEL_NOT_AVAILABLE's data.reason. */
export type UnavailableReason = NonNullable<ErrorData['reason']>;
