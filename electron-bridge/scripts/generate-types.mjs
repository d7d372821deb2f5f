#!/usr/bin/env node
// Generates src/generated/wire.ts from the sidecar's JSON Schemas (../schemas), so the
// TypeScript types are never hand-copied from Python. `--check` regenerates in memory
// and fails when the committed file differs (the drift check `npm run check` runs).
import { readFile, readdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isDeepStrictEqual } from 'node:util';
import { compile } from 'json-schema-to-typescript';

const here = dirname(fileURLToPath(import.meta.url));
const schemasDir = resolve(process.env.MODEL_MANAGER_SCHEMAS ?? join(here, '..', '..', 'schemas'));
const outFile = join(here, '..', 'src', 'generated', 'wire.ts');

const pascal = (text) =>
  text
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w[0].toUpperCase() + w.slice(1))
    .join('');

// Property titles ("Modelid") would each become a useless exported alias; only the
// roots and the shared $defs deserve names.
function stripPropertyTitles(schema, isNamed) {
  if (Array.isArray(schema)) return schema.map((s) => stripPropertyTitles(s, false));
  if (schema === null || typeof schema !== 'object') return schema;
  const out = {};
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'title' && !isNamed) continue;
    if (key === '$defs') {
      out.$defs = Object.fromEntries(
        Object.entries(value).map(([name, def]) => [name, stripPropertyTitles(def, true)]),
      );
    } else if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value).map(([name, prop]) => [name, stripPropertyTitles(prop, false)]),
      );
    } else {
      out[key] = stripPropertyTitles(value, false);
    }
  }
  return out;
}

async function readJson(path) {
  return JSON.parse(await readFile(path, 'utf8'));
}

async function loadRoots() {
  // Order matters: the first of several identical schemas owns the interface and the
  // others become aliases, so `Task` comes from the notification, not from `pause`.
  const roots = [];
  const notifications = (await readdir(join(schemasDir, 'notifications'))).sort();
  const methodFiles = (await readdir(join(schemasDir, 'methods'))).sort();
  const files = (await readdir(join(schemasDir, 'files'))).sort();
  for (const file of notifications) {
    const event = file.replace(/\.json$/, '');
    roots.push({ name: event === 'task.progress' ? 'Task' : `${pascal(event)}Params`, file: `notifications/${file}` });
  }
  const methods = [];
  for (const file of methodFiles) {
    const match = /^(.*)\.(params|result)\.json$/.exec(file);
    if (!match) throw new Error(`unexpected schema file methods/${file}`);
    const [, method, kind] = match;
    if (!methods.includes(method)) methods.push(method);
    roots.push({ name: `${pascal(method)}${pascal(kind)}`, file: `methods/${file}` });
  }
  for (const file of files) roots.push({ name: pascal(file.replace(/\.json$/, '')), file: `files/${file}` });
  roots.push({ name: 'RepositoryModel', file: 'repository/model.json' });
  for (const root of roots) root.schema = await readJson(join(schemasDir, root.file));
  const errors = await readJson(join(schemasDir, 'errors.json'));
  return { roots, methods, notifications: notifications.map((f) => f.replace(/\.json$/, '')), errors };
}

const withoutNames = ({ title: _t, description: _d, ...rest }) => rest;

function combine(roots) {
  const defs = {};
  const addDef = (defName, def, file) => {
    if (defs[defName] && !isDeepStrictEqual(withoutNames(defs[defName]), withoutNames(def))) {
      throw new Error(`$defs/${defName} differs between schemas (seen again in ${file})`);
    }
    defs[defName] ??= def;
  };
  const properties = {};
  const aliases = [];
  const owners = [];
  for (const { name, file, schema } of roots) {
    const { $defs = {}, $schema: _ignored, title: _title, ...body } = schema;
    for (const [defName, def] of Object.entries($defs)) addDef(defName, def, file);
    const owner = owners.find((o) => isDeepStrictEqual(withoutNames(o.body), withoutNames(body)));
    if (owner) {
      aliases.push(`/** ${file} */\nexport type ${name} = ${owner.name};`);
      continue;
    }
    owners.push({ name, body });
    // Each root goes into $defs and is referenced from the index: referenced schemas
    // become named interfaces, inline ones would not.
    addDef(name, { ...body, title: name, description: body.description ?? `schemas/${file}` }, file);
    properties[name] = { $ref: `#/$defs/${name}` };
  }
  const combined = {
    title: 'WireSchemas',
    description: 'Every schema in ../schemas by type name (an index of the generated types).',
    type: 'object',
    additionalProperties: false,
    required: Object.keys(properties),
    properties,
    $defs: defs,
  };
  return { schema: stripPropertyTitles(combined, true), aliases };
}

function tail({ methods, notifications, errors }, names) {
  const has = (n) => names.has(n);
  const methodLines = methods.map((m) => {
    const params = `${pascal(m)}Params`;
    const result = `${pascal(m)}Result`;
    if (!has(params) || !has(result)) throw new Error(`method ${m} lacks params or result schema`);
    return `  ${m}: { params: ${params}; result: ${result} };`;
  });
  const notificationLines = notifications.map(
    (n) => `  '${n}': ${n === 'task.progress' ? 'Task' : `${pascal(n)}Params`};`,
  );
  const codes = Object.entries(errors.codes).map(([name, code]) => `  ${name}: ${code},`);
  return `
/** Every sidecar method: its params and its result. */
export interface Methods {
${methodLines.join('\n')}
}

export type MethodName = keyof Methods;

export const METHOD_NAMES = [${methods.map((m) => `'${m}'`).join(', ')}] as const satisfies readonly MethodName[];

/** Every notification the sidecar sends: its params. */
export interface Notifications {
${notificationLines.join('\n')}
}

export type NotificationName = keyof Notifications;

export const NOTIFICATION_NAMES = [${notifications.map((n) => `'${n}'`).join(', ')}] as const satisfies readonly NotificationName[];

/** schemas/errors.json: the sidecar's error names and their JSON-RPC codes. */
export const ERROR_CODES = {
${codes.join('\n')}
} as const;

export type ErrorName = keyof typeof ERROR_CODES;
`;
}

async function generate() {
  const loaded = await loadRoots();
  const { schema, aliases } = combine(loaded.roots);
  const body = await compile(schema, 'WireSchemas', {
    bannerComment:
      '/* eslint-disable */\n// GENERATED by scripts/generate-types.mjs from ../schemas — do not edit.\n// Run `npm run generate-types` after `make schemas`; `npm run check` fails on drift.',
    additionalProperties: false,
    unknownAny: true,
    strictIndexSignatures: true,
    style: { singleQuote: true, printWidth: 100 },
  });
  const names = new Set(loaded.roots.map((r) => r.name));
  return `${body}\n${aliases.join('\n')}\n${tail(loaded, names)}`;
}

const text = await generate();
if (process.argv.includes('--check')) {
  const current = await readFile(outFile, 'utf8').catch(() => '');
  if (current !== text) {
    process.stderr.write(
      `src/generated/wire.ts is out of date with ${schemasDir}; run \`npm run generate-types\`.\n`,
    );
    process.exit(1);
  }
} else {
  await writeFile(outFile, text);
}
