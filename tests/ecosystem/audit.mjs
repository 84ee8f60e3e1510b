// GraphQL-over-HTTP conformance: the `graphql-http` package's server audit suite (the
// reference implementation of the GraphQL over HTTP spec) against chatstats' /graphql.
// Every MUST has to pass; SHOULDs and MAYs that do not pass are listed.
//
// node audit.mjs --url http://127.0.0.1:8080
// Summary: { ok, total, pass, notice, warn, error, failingMusts, failingShoulds, notices }.

import { serverAudits } from 'graphql-http';
import { args, deadline, fail, log, loopbackUrl, required, succeed } from './lib.mjs';

deadline(60);
const opts = args();
const url = new URL('/graphql', loopbackUrl(required(opts, 'url'))).toString();

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetch })) {
  results.push(await audit.fn());
}
const failing = (status) => results
  .filter((r) => r.status === status)
  .map(({ id, name, reason }) => ({ id, name, reason }));
const summary = {
  url,
  total: results.length,
  pass: results.filter((r) => r.status === 'ok').length,
  // graphql-http grades a failed MAY `notice`, a failed SHOULD `warn`, a failed MUST `error`.
  notice: failing('notice').length,
  warn: failing('warn').length,
  error: failing('error').length,
  failingMusts: failing('error'),
  failingShoulds: failing('warn'),
  notices: failing('notice'),
};
for (const r of results) if (r.status !== 'ok') log(`${r.status} ${r.id} ${r.name}: ${r.reason}`);
if (summary.error > 0) fail(`${summary.error} MUST audit(s) fail`, summary);
succeed(summary);
