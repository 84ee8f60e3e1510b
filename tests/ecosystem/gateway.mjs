// End to end through a real gateway: the sample partner subgraph and Hive Gateway
// (@graphql-hive/gateway's createGatewayRuntime) on free loopback ports, over a supergraph
// composed from chatstats' live SDL with the real ports. One query crosses both subgraphs;
// its answer must equal what chatstats answers directly and what the partner holds.
//
// node gateway.mjs --url http://127.0.0.1:8080
// Summary: { ok, gatewayUrl, query, data, ms }.

import { createServer } from 'node:http';
import { createGatewayRuntime } from '@graphql-hive/gateway';
import { isDeepStrictEqual } from 'node:util';
import { args, deadline, fail, graphql, log, loopbackUrl, required, succeed } from './lib.mjs';
import { composeSupergraph } from './compose.mjs';
import { CRM_ACCOUNTS, startPartner } from './partner-subgraph.mjs';

// ConnectyCube only: the other providers of `messages.sent` include Xenioo, whose 30-day
// retention would add OUT_OF_RETENTION errors to a fixed historical window.
const WINDOW = '{ from: "2025-03-01T00:00:00Z", to: "2025-03-08T00:00:00Z", granularity: DAY, timeZone: "UTC" }';
const CHATSTATS_FIELDS = `id name timeZone
    messages { sent(window: ${WINDOW}, provider: CONNECTYCUBE) { total sources points { at value } } }`;
export const QUERY = `{ workspaces { ${CHATSTATS_FIELDS}
    crmAccount { id name tier } } }`;

deadline(90);
const started = Date.now();
const opts = args();
const endpoint = new URL('/graphql', loopbackUrl(required(opts, 'url'))).toString();

const partner = await startPartner(0);
log(`partner subgraph on ${partner.url}`);
let supergraphSdl;
try {
  ({ supergraphSdl } = await composeSupergraph(endpoint, partner.url));
} catch (error) {
  fail(error.message);
}

const gateway = createGatewayRuntime({
  supergraph: supergraphSdl,
  logging: 'warn',
  // No landing page, no Hive/GraphOS reporting: nothing leaves loopback.
  landingPage: false,
  graphiql: false,
});
const server = createServer(gateway);
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const gatewayUrl = `http://127.0.0.1:${server.address().port}/graphql`;
log(`Hive Gateway on ${gatewayUrl}`);

const viaGateway = await graphql(gatewayUrl, QUERY);
const direct = await graphql(endpoint, `{ workspaces { ${CHATSTATS_FIELDS} } }`);

const problems = [];
if (viaGateway.errors) problems.push(`gateway errors: ${JSON.stringify(viaGateway.errors)}`);
if (direct.errors) problems.push(`chatstats errors: ${JSON.stringify(direct.errors)}`);
const gatewayWorkspaces = viaGateway.data?.workspaces ?? [];
const directWorkspaces = direct.data?.workspaces ?? [];
if (gatewayWorkspaces.length === 0) problems.push('the gateway returned no workspaces');
if (gatewayWorkspaces.length !== directWorkspaces.length) {
  problems.push(`${gatewayWorkspaces.length} workspaces via the gateway, ${directWorkspaces.length} direct`);
}
gatewayWorkspaces.forEach((workspace, i) => {
  const { crmAccount, ...ours } = workspace;
  if (!isDeepStrictEqual(ours, directWorkspaces[i])) {
    problems.push(`workspace ${workspace.id}: gateway ${JSON.stringify(ours)} != direct ${JSON.stringify(directWorkspaces[i])}`);
  }
  if (!isDeepStrictEqual(crmAccount, CRM_ACCOUNTS[workspace.id] ?? null)) {
    problems.push(`workspace ${workspace.id}: crmAccount ${JSON.stringify(crmAccount)} is not the partner's`);
  }
  if (typeof ours.messages?.sent?.total !== 'number') {
    problems.push(`workspace ${workspace.id}: messages.sent.total is not a number`);
  }
});

server.close();
await partner.close();
await gateway[Symbol.asyncDispose]?.();
const summary = { gatewayUrl, query: QUERY, data: viaGateway.data, ms: Date.now() - started };
if (problems.length) fail(problems.join('\n'), summary);
succeed(summary);
