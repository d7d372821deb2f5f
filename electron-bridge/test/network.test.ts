// The system proxy, as Chromium resolves it, passed to the sidecar: PAC answers turned
// into the sidecar's form, `--proxy` at start, `setNetwork` when the answer changes, and
// an older sidecar (no flag, no method) still running, with the gap logged.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { ModelManagerClient, ModelNotAvailableError, proxyFromPac, redactProxy, type ModelManagerOptions } from '../src/index.js';
import { FIXTURES, realClient, recordingLogger, waitUntil } from './helpers/sidecar.js';

test('PAC answers → one proxy URL or "direct" (the first usable entry wins)', () => {
  const cases: [string, string, string[]][] = [
    ['DIRECT', 'direct', []],
    ['', 'direct', []],
    ['PROXY proxy.corp:3128', 'http://proxy.corp:3128', []],
    ['PROXY proxy.corp:3128; DIRECT', 'http://proxy.corp:3128', []],
    ['  proxy  a.example:80 ;PROXY b.example:81', 'http://a.example:80', []],
    ['HTTPS secure.corp:443', 'https://secure.corp:443', []],
    ['SOCKS5 socks.corp:1080; SOCKS socks4.corp:1080', 'socks5://socks.corp:1080', []],
    ['SOCKS socks4.corp:1080', 'socks4://socks4.corp:1080', []],
    ['SOCKS4 s.corp:1080', 'socks4://s.corp:1080', []],
    ['PROXY [::1]:8080', 'http://[::1]:8080', []],
    ['DIRECT; PROXY later.corp:1', 'direct', []],
    ['QUIC q.corp:443; PROXY p.corp:8080', 'http://p.corp:8080', ['QUIC q.corp:443']],
    ['PROXY nohost; PROXY user:pw@x.corp:1; PROXY ok.corp:2', 'http://ok.corp:2', ['PROXY nohost', 'PROXY user:pw@x.corp:1']],
    ['BOGUS', 'direct', ['BOGUS']],
  ];
  for (const [pac, proxy, skipped] of cases) assert.deepEqual(proxyFromPac(pac), { proxy, skipped }, pac);
});

test('proxy URLs in logs have their credentials redacted', () => {
  assert.equal(redactProxy('http://alice:s3cret@proxy.corp:3128'), 'http://***@proxy.corp:3128');
  assert.equal(redactProxy('http://proxy.corp:3128'), 'http://proxy.corp:3128');
  assert.equal(redactProxy('direct'), 'direct');
  assert.equal(redactProxy(null), 'the environment');
  assert.equal(redactProxy('not a url with a:b@c'), '***');
});

/** A stand-in for session.defaultSession.resolveProxy: answers `pac`, records the URLs asked. */
function resolver(pac: string) {
  const asked: string[] = [];
  const fn = Object.assign(
    async (url: string) => {
      asked.push(url);
      return fn.pac;
    },
    { pac, asked },
  );
  return fn;
}

function fakeClient(t: { after(fn: () => unknown): void }, mode: string, options: ModelManagerOptions = {}) {
  const logger = recordingLogger();
  const client = new ModelManagerClient({
    command: process.execPath,
    args: [join(FIXTURES, 'fake-sidecar.mjs'), mode],
    repository: ['http://mirror.corp/models', 'http://origin.corp'],
    env: { HTTP_PROXY: undefined, HTTPS_PROXY: undefined, ALL_PROXY: undefined, http_proxy: undefined, https_proxy: undefined, all_proxy: undefined },
    logger,
    restart: { initialDelayMs: 20, maxDelayMs: 100 },
    ...options,
  }).start();
  t.after(() => client.dispose());
  return { client, logger };
}

type FakeInfo = { argv: string[]; received: { method: string; params: unknown }[] };
const fakeInfo = async (client: ModelManagerClient) => (await client.getInfo()) as unknown as FakeInfo;
const setNetworkCalls = (info: FakeInfo) => info.received.filter((r) => r.method === 'setNetwork').map((r) => r.params);

test('the resolved proxy is passed with --proxy at start, and a change with setNetwork', async (t) => {
  const resolveProxy = resolver('PROXY proxy.corp:3128; DIRECT');
  const { client, logger } = fakeClient(t, 'network', { network: { resolveProxy, pollMs: 0 } });
  let info = await fakeInfo(client);
  assert.deepEqual(resolveProxy.asked, ['http://mirror.corp/models'], 'asked for the first repository');
  assert.deepEqual(info.argv, ['--proxy', 'http://proxy.corp:3128']);
  assert.deepEqual(setNetworkCalls(info), [], 'nothing to change after start');

  resolveProxy.pac = 'SOCKS5 socks.corp:1080';
  const state = await client.refreshNetwork();
  assert.deepEqual(state, { resolved: 'socks5://socks.corp:1080', applied: 'socks5://socks.corp:1080', runtime: 'supported', startFlag: true });
  await client.refreshNetwork(); // unchanged: not sent again
  resolveProxy.pac = 'DIRECT';
  await client.refreshNetwork();
  info = await fakeInfo(client);
  assert.deepEqual(setNetworkCalls(info), [{ proxy: 'socks5://socks.corp:1080' }, { proxy: 'direct' }]);
  assert.ok(logger.has('info', /network: the sidecar now uses direct/));
});

test('DIRECT while the environment names a proxy: "direct" is said out loud after the handshake', async (t) => {
  const resolveProxy = resolver('DIRECT');
  const { client } = fakeClient(t, 'network', { network: { resolveProxy, pollMs: 0, url: 'https://models.corp' }, env: { HTTPS_PROXY: 'http://envproxy:8080' } });
  await waitUntil(async () => setNetworkCalls(await fakeInfo(client)).length > 0, 5000, 'setNetwork');
  const info = await fakeInfo(client);
  assert.deepEqual(info.argv, []);
  assert.deepEqual(setNetworkCalls(info), [{ proxy: 'direct' }]);
  assert.deepEqual(resolveProxy.asked, ['https://models.corp']);
});

test('polling notices a changed system proxy', async (t) => {
  const resolveProxy = resolver('DIRECT');
  const { client } = fakeClient(t, 'network', { network: { resolveProxy, pollMs: 50 } });
  await client.getInfo();
  resolveProxy.pac = 'HTTPS tls.corp:443';
  await waitUntil(() => client.networkState?.applied === 'https://tls.corp:443', 5000, 'the polled change to be applied');
});

test('an older sidecar: METHOD_NOT_FOUND for setNetwork is "not supported", logged, not fatal', async (t) => {
  const resolveProxy = resolver('DIRECT');
  const { client, logger } = fakeClient(t, 'echo', { network: { resolveProxy, pollMs: 0 } });
  await client.getInfo();
  resolveProxy.pac = 'PROXY alice:pw@p.corp:1; PROXY p.corp:3128';
  const state = await client.refreshNetwork();
  assert.equal(state?.runtime, 'unsupported');
  assert.equal(state?.applied, 'direct');
  assert.ok(logger.has('warn', /proxy not supported at run time by this sidecar.*http:\/\/p\.corp:3128 applies from its next start/));
  assert.ok(!logger.lines.some((l) => l.message.includes('pw@')), 'no credentials in the log');
  assert.equal(client.state, 'running');
  assert.equal((await client.getInfo()).home, 'echo');
  // The next start takes it by flag.
  process.kill(client.pid!, 'SIGKILL');
  await waitUntil(() => client.state === 'running' && client.restarts === 1, 5000, 'restart');
  assert.deepEqual((await fakeInfo(client)).argv, ['--proxy', 'http://p.corp:3128']);
});

test('an older sidecar that refuses --proxy is started again without it (not counted as a crash)', async (t) => {
  const { client, logger } = fakeClient(t, 'no-proxy-flag', { network: { resolveProxy: resolver('PROXY p.corp:3128'), pollMs: 0 } });
  const info = await fakeInfo(client);
  assert.deepEqual(info.argv, []);
  assert.equal(client.restarts, 0);
  assert.equal(client.networkState?.startFlag, false);
  assert.ok(logger.has('warn', /does not take --proxy/));
});

test('a resolveProxy that hangs does not hold the start: the sidecar starts on its environment', async (t) => {
  const { client, logger } = fakeClient(t, 'network', { network: { resolveProxy: () => new Promise(() => {}), resolveTimeoutMs: 100, pollMs: 0 } });
  const info = await fakeInfo(client);
  assert.deepEqual(info.argv, []);
  assert.ok(logger.has('warn', /could not resolve the proxy for http:\/\/mirror\.corp\/models \(no answer within 100 ms\)/));
});

test('the real sidecar with a resolved proxy: it runs, with the proxy taken or the gap logged', async (t) => {
  const resolveProxy = resolver('PROXY 127.0.0.1:9');
  const { client, logger } = await realClient(t, { network: { resolveProxy, pollMs: 0 } });
  await client.getInfo();
  resolveProxy.pac = 'DIRECT';
  const state = (await client.refreshNetwork())!;
  // Before the sidecar's proxy support lands it refuses the flag and the method; after, it takes both.
  if (state.startFlag) {
    assert.equal(state.runtime, 'supported');
    assert.equal(state.applied, 'direct');
  } else {
    assert.ok(logger.has('warn', /does not take --proxy/));
    assert.equal(state.runtime, 'unsupported');
    assert.ok(logger.has('warn', /proxy not supported at run time/));
  }
  assert.equal(client.restarts, 0);
  await assert.rejects(client.getModelPath({ modelId: 'absent' }), ModelNotAvailableError);
});
