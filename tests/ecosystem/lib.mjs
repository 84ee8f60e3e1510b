// Shared helpers of the ecosystem scripts: arguments, talking to chatstats, the summary line.
//
// Every script prints exactly one JSON object on stdout (its summary, read by
// tests/api/ecosystem.rs) and writes everything else to stderr. A failed check exits 1.

import { parse } from 'graphql';

/** `--name value` pairs from the command line. */
export function args() {
  const out = {};
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || argv[i + 1] === undefined) {
      fail(`bad arguments: ${argv.join(' ')}`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}

export function required(opts, name) {
  if (!opts[name]) fail(`--${name} is required`);
  return opts[name];
}

/** Only loopback: the checks never leave the machine. */
export function loopbackUrl(raw) {
  const url = new URL(raw);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname)) {
    fail(`${raw} is not a loopback URL`);
  }
  return url;
}

export function log(...parts) {
  console.error('[ecosystem]', ...parts);
}

export function fail(message, summary = {}) {
  console.log(JSON.stringify({ ok: false, error: message, ...summary }));
  process.exit(1);
}

export function succeed(summary) {
  console.log(JSON.stringify({ ok: true, ...summary }));
  process.exit(0);
}

/** POST a GraphQL request; the parsed body. */
export async function graphql(endpoint, query, variables = {}) {
  const response = await fetch(endpoint, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query, variables }),
  });
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${endpoint} answered ${response.status} with non-JSON: ${text.slice(0, 200)}`);
  }
}

/** The subgraph SDL chatstats serves at `_service { sdl }`, as the gateway tools see it. */
export async function liveFederationSdl(endpoint) {
  const body = await graphql(endpoint, '{ _service { sdl } }');
  const sdl = body?.data?._service?.sdl;
  if (typeof sdl !== 'string' || body.errors) {
    throw new Error(`_service { sdl } failed: ${JSON.stringify(body).slice(0, 500)}`);
  }
  return sdl;
}

/** The federation version of `extend schema @link(url: ".../federation/vX.Y")`, or null. */
export function federationLink(sdl) {
  const document = parse(sdl);
  for (const definition of document.definitions) {
    if (definition.kind !== 'SchemaExtension' && definition.kind !== 'SchemaDefinition') continue;
    for (const directive of definition.directives ?? []) {
      if (directive.name.value !== 'link') continue;
      const url = directive.arguments?.find((a) => a.name.value === 'url')?.value;
      const match = url?.kind === 'StringValue'
        && /^https:\/\/specs\.apollo\.dev\/federation\/(v\d+\.\d+)$/.exec(url.value);
      if (match) return match[1];
    }
  }
  return null;
}

/** Kill a whole run when something hangs (the Rust side has its own timeout too). */
export function deadline(seconds) {
  setTimeout(() => fail(`timed out after ${seconds} s`), seconds * 1000).unref();
}
