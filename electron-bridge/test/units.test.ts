// Unit tests for the small pure parts: line framing, restart backoff, error mapping.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LineSplitter } from '../src/lines.js';
import { bytes, errorText, eta, statusText } from '../examples/model-library/format.js';
import { RestartBudget, restartDelay, DEFAULT_RESTART_POLICY } from '../src/supervisor.js';
import {
  ERROR_CODES,
  ModelManagerError,
  ModelNotAvailableError,
  ChecksumMismatchError,
  ProtocolError,
  RequestTimeoutError,
  errorFromPayload,
  errorFromRpc,
  toErrorPayload,
} from '../src/index.js';

function split(chunks: Buffer[], max?: number) {
  const lines: string[] = [];
  const overlong: number[] = [];
  const splitter = new LineSplitter({ line: (l) => lines.push(l), overlong: (n) => overlong.push(n) }, max);
  for (const chunk of chunks) splitter.push(chunk);
  splitter.end();
  return { lines, overlong };
}

test('lines: the same lines whatever the chunk boundaries (multi-byte UTF-8 included)', () => {
  const text = Buffer.from('{"a":"héllo 模型"}\n\n{"b":2}\r\nlast without newline');
  const expected = ['{"a":"héllo 模型"}', '{"b":2}', 'last without newline'];
  for (let size = 1; size <= text.length; size++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < text.length; i += size) chunks.push(text.subarray(i, i + size));
    assert.deepEqual(split(chunks).lines, expected, `chunk size ${size}`);
  }
});

test('lines: an overlong line is dropped once and reading resumes after it', () => {
  const chunks = [Buffer.from('ok1\n' + 'x'.repeat(30)), Buffer.from('y'.repeat(30) + '\nok2\n')];
  const { lines, overlong } = split(chunks, 40);
  assert.deepEqual(lines, ['ok1', 'ok2']);
  assert.deepEqual(overlong, [60]);
});

test('restart backoff grows by the factor up to the cap; the budget caps restarts per window', () => {
  const policy = { ...DEFAULT_RESTART_POLICY, initialDelayMs: 100, factor: 2, maxDelayMs: 500, maxRestarts: 3, windowMs: 1000 };
  assert.deepEqual([0, 1, 2, 3, 4].map((n) => restartDelay(n, policy)), [100, 200, 400, 500, 500]);
  const budget = new RestartBudget(policy);
  assert.deepEqual([budget.crashed(0), budget.crashed(10), budget.crashed(20), budget.crashed(30)], [100, 200, 400, null]);
  // Crashes older than the window are forgotten: a sidecar that ran a while starts afresh.
  assert.equal(budget.crashed(2000), 100);
});

test('errors: every sidecar error code maps to its own subclass, by data.code or by number', () => {
  for (const [name, code] of Object.entries(ERROR_CODES)) {
    const byName = errorFromRpc({ code, message: 'm', data: { code: name } });
    const byNumber = errorFromRpc({ code, message: 'm' });
    assert.equal(byName.code, name);
    assert.equal(byNumber.code, name);
    assert.equal(byName.rpcCode, code);
    assert.equal(byName.constructor, byNumber.constructor);
    assert.notEqual(byName.constructor, ModelManagerError, `${name} has a subclass`);
  }
  assert.ok(errorFromRpc({ code: 1005, message: 'm', data: { code: 'CHECKSUM_MISMATCH' } }) instanceof ChecksumMismatchError);
  const future = errorFromRpc({ code: 1099, message: 'new', data: { code: 'SOMETHING_NEW' } });
  assert.equal(future.code, 'SOMETHING_NEW');
  assert.ok(errorFromRpc({ code: -32602, message: 'Invalid params' }) instanceof ProtocolError);
});

test('errors: a payload round trip rebuilds the typed error with its fields', () => {
  const original = errorFromRpc({
    code: 1001,
    message: 'm@1 is not available: downloading',
    data: { code: 'MODEL_NOT_AVAILABLE', modelId: 'm', version: '1', reason: 'downloading' },
  });
  const payload = structuredClone(toErrorPayload(original));
  const rebuilt = errorFromPayload(payload);
  assert.ok(rebuilt instanceof ModelNotAvailableError);
  assert.equal(rebuilt.modelId, 'm');
  assert.equal(rebuilt.version, '1');
  assert.equal(rebuilt.reason, 'downloading');
  assert.equal(rebuilt.message, original.message);
  assert.ok(errorFromPayload(toErrorPayload(new RequestTimeoutError('t'))) instanceof RequestTimeoutError);
  assert.deepEqual(toErrorPayload(new TypeError('boom')), { code: 'INTERNAL_ERROR', message: 'boom', data: null });
});

test('Model Library page: typed errors and service states become sentences the user can act on', () => {
  assert.equal(
    errorText({ code: 'MODEL_NOT_AVAILABLE', message: 'x', data: { modelId: 'whisper-small-zh', version: '1.0.0', reason: 'not_installed' } }),
    'whisper-small-zh 1.0.0 is not installed on this computer yet (not installed).',
  );
  assert.match(errorText({ code: 'INSUFFICIENT_DISK_SPACE', message: 'need 4 GB' }, 'Whisper Large 3.0'), /^Not enough disk space to install Whisper Large 3\.0\. Free up space/);
  assert.match(errorText({ code: 'REPOSITORY_UNAVAILABLE', message: 'x' }), /^The model repository cannot be reached\. Check your network connection or proxy settings/);
  assert.equal(errorText({ code: 'SOMETHING_NEW', message: 'as the sidecar said' }), 'as the sidecar said');
  assert.deepEqual(statusText({ state: 'restarting', pid: null, restarts: 1, delayMs: 500 }), { text: 'The model service stopped; restarting in 0.5 s…', alert: true });
  const broken = statusText({ state: 'broken', pid: null, restarts: 0, error: { code: 'PROTOCOL_MISMATCH', message: 'the sidecar speaks protocol 0' } });
  assert.equal(broken.alert, true);
  assert.match(broken.text, /could not be started: the sidecar speaks protocol 0\. Restart the app/);
  assert.equal(bytes(1_500_000), '1.5 MB');
  assert.equal(eta(125), '2 min 5 s left');
});
