// GraphiQL in a real browser: headless Chromium (driven by playwright-core, no browser
// download) opens chatstats' `/`, types the README's example query, runs it and reads the
// result pane. Requests that would leave loopback are blocked and reported: the page must
// work offline. Saves a screenshot.
//
// node graphiql.mjs --url http://127.0.0.1:8080 --readme ../../README.md --screenshot out.png
// Summary: { ok, title, channels, messagesSentTotal, errorCodes, resultPaneShows, blockedRequests,
//   consoleErrors, screenshot, ms }.

import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { chromium } from 'playwright-core';
import { args, deadline, fail, log, loopbackUrl, required, succeed } from './lib.mjs';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

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
const query = readmeExampleQuery(readFileSync(required(opts, 'readme'), 'utf8'));
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
  // CodeMirror 5 keeps its API on the element; setValue is what typing/pasting ends in.
  await page.$eval(editor, (el, text) => el.CodeMirror.setValue(text), query);
  await page.click('.graphiql-execute-button');
  const result = '.result-window .CodeMirror';
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.CodeMirror?.getValue().includes('"data"'),
    result,
    { timeout: 30_000 },
  );
  const text = await page.$eval(result, (el) => el.CodeMirror.getValue());
  const shown = await page.$eval('.result-window', (el) => el.innerText);
  await page.screenshot({ path: screenshot });
  const body = JSON.parse(text);
  const workspace = body.data?.workspace;
  const summary = {
    title: await page.title(),
    channels: workspace?.channels?.map((c) => c.id) ?? [],
    messagesSentTotal: workspace?.messages?.sent?.total ?? null,
    errorCodes: [...new Set((body.errors ?? []).map((e) => e.extensions?.code))],
    // What a person sees (CodeMirror draws only the visible lines): the workspace's name.
    resultPaneShows: ['"data"', 'Acme Support'].filter((t) => shown.includes(t)),
    blockedRequests,
    consoleErrors,
    screenshot,
    ms: Date.now() - started,
  };
  const problems = [];
  if (!summary.channels.includes('help_scout:chat')) problems.push('the result has no "help_scout:chat" channel');
  if (summary.resultPaneShows.length !== 2) problems.push(`the result pane shows only ${summary.resultPaneShows}`);
  if (typeof summary.messagesSentTotal !== 'number') problems.push('messages.sent.total is not a number');
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
