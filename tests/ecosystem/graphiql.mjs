// GraphiQL in a real browser: headless Chromium (driven by playwright-core, no browser
// download) opens chatstats' `/` as a newcomer does, runs the example the editor opens on
// (untouched), reads the result pane and opens the explorer plugin. Requests that would
// leave loopback are blocked and reported: the page must work offline. Saves a screenshot.
//
// node graphiql.mjs --url http://127.0.0.1:8080 --screenshot out.png
//   [--readme ../../README.md]  the editor must hold the README's example (sandbox mode)
//   [--key KEY]                 the Headers tab must hold the placeholder key; the script
//                               puts KEY in its place before running (API keys configured)
// Summary: { ok, title, editorHasReadmeExample, headers, data, errorCodes, resultPaneShows,
//   explorerFields, blockedRequests, consoleErrors, screenshot, ms }.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { args, deadline, fail, log, loopbackUrl, required, succeed } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
/** What chatstats pre-fills the Headers tab with when API keys are configured. */
const HEADERS_PLACEHOLDER = '{"Authorization": "Bearer <your key>"}';

/** The README's example query: the ```graphql block between the example-query markers. */
export function readmeExampleQuery(readme) {
  const match = /<!-- example-query[^>]*-->\s*```graphql\n([\s\S]*?)```\s*<!-- \/example-query -->/.exec(readme);
  if (!match) throw new Error('README.md has no ```graphql block between <!-- example-query --> markers');
  return match[1];
}

deadline(90);
const started = Date.now();
const opts = args();
const pageUrl = new URL('/', loopbackUrl(required(opts, 'url'))).toString();
const readmeQuery = opts.readme ? readmeExampleQuery(readFileSync(opts.readme, 'utf8')) : null;
const key = opts.key ?? null;
const screenshot = resolve(required(opts, 'screenshot'));
mkdirSync(dirname(screenshot), { recursive: true });

const userDataDir = mkdtempSync(join(tmpdir(), 'chatstats-chromium-'));
let context;
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1400, height: 900 },
  });
} catch (error) {
  rmSync(userDataDir, { recursive: true, force: true });
  fail(`cannot start Chromium at ${CHROMIUM} (install it: apt-get install -y chromium): ${error.message}`);
}

const blockedRequests = [];
const consoleErrors = [];
try {
  const page = context.pages()[0] ?? await context.newPage();
  await page.route('**/*', (route) => {
    const { hostname, protocol } = new URL(route.request().url());
    if (protocol === 'data:' || ['127.0.0.1', 'localhost', '[::1]'].includes(hostname)) {
      return route.continue();
    }
    blockedRequests.push(route.request().url());
    return route.abort();
  });
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  await page.goto(pageUrl);
  const editor = '.graphiql-query-editor .CodeMirror';
  await page.waitForSelector(editor, { timeout: 30_000 });
  // CodeMirror 5 keeps its API on the element.
  const opened = await page.$eval(editor, (el) => el.CodeMirror.getValue());
  const problems = [];
  if (opened.includes('Welcome to GraphiQL')) problems.push('the editor opened on GraphiQL\'s welcome text');
  const editorHasReadmeExample = readmeQuery === null ? null : opened.includes(readmeQuery);
  if (editorHasReadmeExample === false) problems.push(`the editor does not hold the README example: ${opened}`);

  // The Headers tab (open by itself when keys are configured).
  // The tool section holds both editors, the inactive one hidden.
  const headersEditor = 'section.graphiql-editor-tool[aria-label="Headers"] .CodeMirror >> visible=true';
  let headers = null;
  if (key !== null) {
    await page.waitForSelector(headersEditor, { timeout: 10_000 });
    headers = await page.$eval(headersEditor, (el) => el.CodeMirror.getValue());
    if (headers !== HEADERS_PLACEHOLDER) problems.push(`the Headers tab holds ${headers}, not the placeholder`);
    // What a newcomer does: put their key where the placeholder says.
    await page.$eval(headersEditor, (el, k) => el.CodeMirror.setValue(el.CodeMirror.getValue().replace('<your key>', k)), key);
    // ...and, as the example's comment says, re-fetch the schema with it (the first
    // introspection went out with the placeholder and was refused).
    await page.click('button[aria-label="Re-fetch GraphQL schema"]');
  }

  await page.click('.graphiql-execute-button');
  const result = '.result-window .CodeMirror';
  await page.waitForFunction(
    (sel) => /"(data|errors)"/.test(document.querySelector(sel)?.CodeMirror?.getValue() ?? ''),
    result,
    { timeout: 30_000 },
  );
  const text = await page.$eval(result, (el) => el.CodeMirror.getValue());
  // What a person sees (CodeMirror draws only the visible lines).
  const shown = await page.$eval('.result-window', (el) => el.innerText);
  const body = JSON.parse(text);
  const errorCodes = [...new Set((body.errors ?? []).map((e) => e.extensions?.code ?? e.message))];
  if (!body.data) problems.push('the result has no data');
  if (errorCodes.length) problems.push(`the result has errors: ${errorCodes.join(', ')}`);

  // The explorer plugin: its sidebar button opens a tree of the schema's root fields.
  await page.click('.graphiql-sidebar button[aria-label="Show GraphiQL Explorer"]');
  await page.waitForSelector('.graphiql-explorer-root', { timeout: 10_000 });
  // The tree fills in once the schema's introspection has answered.
  await page.waitForFunction(
    () => /^workspace$/m.test(document.querySelector('.graphiql-explorer-root')?.innerText ?? ''),
    null,
    { timeout: 10_000 },
  ).catch(() => {}); // reported below with what the tree shows
  const explorerText = await page.$eval('.graphiql-explorer-root', (el) => el.innerText);
  const explorerFields = ['workspace', 'workspaces', 'operator'].filter((f) => new RegExp(`^${f}$`, 'm').test(explorerText));
  if (!explorerFields.includes('workspace')) problems.push(`the explorer shows no "workspace" field: ${explorerText.slice(0, 200)}`);
  await page.screenshot({ path: screenshot });

  const summary = {
    title: await page.title(),
    editorHasReadmeExample,
    headers,
    data: body.data ?? null,
    errorCodes,
    resultPaneShows: ['"data"', '"errors"'].filter((t) => shown.includes(t)),
    explorerFields,
    blockedRequests,
    consoleErrors,
    screenshot,
    ms: Date.now() - started,
  };
  if (!summary.resultPaneShows.includes('"data"')) problems.push('the result pane does not show "data"');
  if (blockedRequests.length) problems.push(`the page tried to leave loopback: ${blockedRequests.join(', ')}`);
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
  if (problems.length) fail(problems.join('; '), summary);
  succeed(summary);
} catch (error) {
  log(`console errors: ${consoleErrors.join(' | ')}`);
  await context.close().catch(() => {});
  rmSync(userDataDir, { recursive: true, force: true });
  fail(`GraphiQL check failed: ${error.message}`, { blockedRequests, consoleErrors });
}
