// A sample partner subgraph: a CRM that extends chatstats' `Workspace` entity with the
// customer account behind it. Plain node:http + @apollo/subgraph's buildSubgraphSchema.
//
// Run alone: node partner-subgraph.mjs --port 4001   (prints its URL)

import { createServer } from 'node:http';
import { pathToFileURL } from 'node:url';
import { buildSubgraphSchema } from '@apollo/subgraph';
import { graphql as execute, parse } from 'graphql';

export const PARTNER_SDL = /* GraphQL */ `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.3", import: ["@key"])

  # chatstats owns Workspace (and its description); the CRM adds one field to it.
  type Workspace @key(fields: "id") {
    id: ID!
    "The customer account this workspace belongs to; null when the CRM does not know it."
    crmAccount: CrmAccount
  }

  "A customer account in the CRM."
  type CrmAccount {
    id: ID!
    name: String!
    tier: String!
  }
`;

/** What the CRM holds, keyed by chatstats workspace id. */
export const CRM_ACCOUNTS = {
  acme: { id: 'crm-1001', name: 'Acme Corporation', tier: 'ENTERPRISE' },
  globex: { id: 'crm-2002', name: 'Globex Inc.', tier: 'GROWTH' },
};

const schema = buildSubgraphSchema({
  typeDefs: parse(PARTNER_SDL),
  resolvers: {
    Workspace: {
      __resolveReference: (reference) => ({ id: reference.id }),
      crmAccount: (workspace) => CRM_ACCOUNTS[workspace.id] ?? null,
    },
  },
});

/** Start on loopback (port 0 = a free one); resolves to { url, close }. */
export function startPartner(port = 0) {
  const server = createServer(async (req, res) => {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    let status = 200;
    let body;
    try {
      const { query, variables, operationName } = JSON.parse(raw || '{}');
      body = await execute({ schema, source: query, variableValues: variables, operationName });
    } catch (error) {
      status = 400;
      body = { errors: [{ message: String(error.message ?? error) }] };
    }
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  });
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => {
      const { port: bound } = server.address();
      resolve({
        url: `http://127.0.0.1:${bound}/graphql`,
        close: () => new Promise((done) => server.close(done)),
      });
    });
  });
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const at = process.argv.indexOf('--port');
  const { url } = await startPartner(at > 0 ? Number(process.argv[at + 1]) : 4001);
  console.log(`partner subgraph on ${url}`);
}
