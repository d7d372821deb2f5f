// Signed catalogs through the bridge: `trustedKeys` reaches the real sidecar, and its
// refusal of an unsigned repository arrives as SignatureInvalidError with its fields.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { SignatureInvalidError } from '../src/index.js';
import { startRepository } from './helpers/repo-server.js';
import { realClient } from './helpers/sidecar.js';

function publicKeyText(): string {
  const spki = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' });
  return `ed25519:${spki.subarray(spki.length - 32).toString('base64')}`; // the raw 32 bytes
}

test('trustedKeys makes the sidecar refuse an unsigned repository with SignatureInvalidError', async (t) => {
  const repo = await startRepository([{ id: 'mt-small', versions: [{ version: '1', files: [{ path: 'm.bin', content: 100 }] }] }]);
  t.after(() => repo.close());
  const { client } = await realClient(t, { repositoryUrl: repo.url, trustedKeys: [publicKeyText(), publicKeyText()] });
  const error = await client.install({ modelId: 'mt-small' }).catch((e: unknown) => e);
  assert.ok(error instanceof SignatureInvalidError, String(error));
  assert.equal(error.rpcCode, 1015);
  const data = error.data as Record<string, unknown>;
  assert.equal(data.reason, 'unsigned');
  assert.equal(data.modelId, 'mt-small');
  assert.equal(data.host, new URL(repo.url).host);
  assert.ok(!repo.requests.some((r) => r.path.startsWith('/storage/')), 'no file was fetched');
});

test("signatures: 'warn' lets the same install through", async (t) => {
  const repo = await startRepository([{ id: 'mt-small', versions: [{ version: '1', files: [{ path: 'm.bin', content: 100 }] }] }]);
  t.after(() => repo.close());
  const { client } = await realClient(t, { repositoryUrl: repo.url, trustedKeys: [publicKeyText()], signatures: 'warn' });
  const started = await client.install({ modelId: 'mt-small' });
  assert.equal(started.modelId, 'mt-small');
});
