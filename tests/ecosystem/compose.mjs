// Composition check: chatstats' federation SDL, read live from the running server
// (`_service { sdl }`), composed with the sample partner subgraph by Apollo's own
// composition library (@apollo/composition, the code inside Rover and GraphOS).
//
// node compose.mjs --url http://127.0.0.1:8080 [--partner-url URL] [--out supergraph.graphql]
// Summary: { ok, federation, subgraphs, hints, supergraphBytes, entities }.

import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { composeServices } from '@apollo/composition';
import { parse } from 'graphql';
import { args, deadline, fail, federationLink, liveFederationSdl, log, loopbackUrl, required, succeed } from './lib.mjs';
import { PARTNER_SDL } from './partner-subgraph.mjs';

/** Compose chatstats and the partner; the supergraph SDL, or throws with every error. */
export async function composeSupergraph(chatstatsEndpoint, partnerEndpoint) {
  const sdl = await liveFederationSdl(chatstatsEndpoint);
  const federation = federationLink(sdl);
  const result = composeServices([
    { name: 'chatstats', url: chatstatsEndpoint, typeDefs: parse(sdl) },
    { name: 'crm', url: partnerEndpoint, typeDefs: parse(PARTNER_SDL) },
  ]);
  if (result.errors) {
    const error = new Error(`composition failed:\n${result.errors.map((e) => `- ${e.message}`).join('\n')}`);
    error.errors = result.errors.map((e) => e.message);
    throw error;
  }
  return { federation, supergraphSdl: result.supergraphSdl, hints: result.hints };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  deadline(60);
  const opts = args();
  const base = loopbackUrl(required(opts, 'url'));
  const endpoint = new URL('/graphql', base).toString();
  const partner = opts['partner-url'] ?? 'http://127.0.0.1:4001/graphql';
  let composed;
  try {
    composed = await composeSupergraph(endpoint, partner);
  } catch (error) {
    fail(error.message, { errors: error.errors ?? [] });
  }
  for (const hint of composed.hints) log(`hint ${hint.definition.code}: ${hint.message}`);
  if (!composed.federation?.startsWith('v2.')) {
    fail(`the chatstats SDL has no @link to federation v2 (found ${composed.federation})`);
  }
  if (opts.out) writeFileSync(opts.out, composed.supergraphSdl);
  const entities = [...composed.supergraphSdl.matchAll(/^type (\w+)[^{]*@join__type\(graph: CHATSTATS, key:/gm)].map((m) => m[1]);
  succeed({
    federation: composed.federation,
    subgraphs: ['chatstats', 'crm'],
    hints: composed.hints.length,
    supergraphBytes: composed.supergraphSdl.length,
    entities,
    workspaceExtendedByCrm: /type Workspace[^{]*@join__type\(graph: CRM, key: "id"\)/.test(composed.supergraphSdl),
  });
}
