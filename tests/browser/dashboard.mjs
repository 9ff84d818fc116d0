#!/usr/bin/env node
// Headless-browser test of the Strata dashboard.
//
// Starts `strata demo` on a free loopback port with a fresh data dir, queues a backfill
// through the admin API, waits until every dashboard endpoint has data, then opens `/` in
// Chromium and checks that all eleven panels load, that their key figures are numbers, and
// that the page logs no error and has no failed request. Saves a full-page screenshot.
//
//   STRATA_BIN=target/debug/strata node tests/browser/dashboard.mjs
//
// Environment:
//   STRATA_BIN        the strata binary (required unless DASHBOARD_URL is set)
//   DASHBOARD_URL     test an already running server instead (skips starting strata)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   SCREENSHOT_DIR    where dashboard.png goes (default tests/browser/artifacts)
//   STRATA_WAIT_SECONDS  how long the data may take to appear (default 600)

import { spawn } from 'node:child_process';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const TOKEN = 'browser-test-token';
const WRITE_KEY = 'wk_browser_test';
const WAIT_MS = Number(process.env.STRATA_WAIT_SECONDS || 600) * 1000;
const READY_MS = 300_000;
const PANELS_MS = 120_000;
const STOP_GRACE_MS = 30_000;

const PANELS = ['realtime-summary', 'realtime-events', 'active-users', 'retention', 'funnels',
  'experiments', 'sessions', 'runs', 'tables', 'quarantine', 'sources'];
const METRICS = {
  'realtime-summary': ['active_5m', 'active_today', 'behind_seconds', 'too_late', 'events_last_hour'],
  'active-users': ['dau', 'wau', 'mau', 'new_users'],
  sessions: ['sessions', 'median_duration'],
  funnels: ['overall_conversion'],
  runs: ['succeeded', 'running', 'failed', 'blocked', 'queued'],
  quarantine: ['quarantine_total', 'too_late'],
};
const POSITIVE = {
  'active-users': ['dau', 'mau'], sessions: ['sessions'],
  'realtime-summary': ['active_today', 'events_last_hour'], runs: ['succeeded'],
};

const log = (msg) => console.log(`[dashboard] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };

/** A figure as the dashboard prints it: "1,234", "32.6%", "0.8s", "5m 12s", "2h 5m". */
export function parseFigure(text) {
  const t = String(text).trim().replace(/,/g, '');
  if (/^-?\d+(\.\d+)?%?$/.test(t)) return parseFloat(t);
  const parts = t.split(/\s+/);
  const unit = { d: 86400, h: 3600, m: 60, s: 1 };
  let total = 0;
  for (const p of parts) {
    const m = /^(\d+(?:\.\d+)?)([dhms])$/.exec(p);
    if (!m) return NaN;
    total += parseFloat(m[1]) * unit[m[2]];
  }
  return parts.length ? total : NaN;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const utcDay = (offsetDays) => new Date(Date.now() + offsetDays * 864e5).toISOString().slice(0, 10);

async function request(base, pathname, init = {}) {
  const res = await fetch(base + pathname, { ...init, signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  let body = null;
  try { body = JSON.parse(text); } catch (_) { /* not JSON */ }
  return { status: res.status, body, text };
}

/**
 * A few events happening now, through the collector: the demo's own live traffic follows
 * the shop's daily rhythm and can be thin at night, and the realtime panels must have
 * something in the last hour whatever the hour.
 */
async function sendLiveEvents(base) {
  const now = new Date().toISOString();
  const batch = Array.from({ length: 20 }, (_, i) => ({
    type: 'track', event: i % 2 ? 'Product Viewed' : 'Product Added',
    userId: `browser-test-user-${i % 5}`, timestamp: now, messageId: `browser-test-${Date.now()}-${i}`,
  }));
  const res = await request(base, '/v1/batch', {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from(`${WRITE_KEY}:`).toString('base64')}` },
    body: JSON.stringify({ batch }),
  });
  if (res.status !== 200 || !res.body || res.body.accepted !== batch.length) {
    fail(`POST /v1/batch answered ${res.status}: ${res.text}`);
  }
  log(`sent ${batch.length} live events`);
}

/** The strata child process, with the tail of what it printed. */
class Strata {
  constructor(bin, port, dataDir) {
    this.tail = [];
    this.exited = null;
    const env = { ...process.env, STRATA_ADMIN_TOKEN: TOKEN, STRATA_WRITE_KEY: WRITE_KEY };
    delete env.STRATA_CONFIG; // the test runs on defaults, whatever the caller's shell has
    const args = ['demo', '--days', '7', '--users', '400', '--listen', `127.0.0.1:${port}`, '--data-dir', dataDir];
    log(`starting ${bin} ${args.join(' ')}`);
    this.proc = spawn(bin, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk) => {
      this.tail.push(...chunk.toString().split('\n').filter(Boolean));
      if (this.tail.length > 200) this.tail.splice(0, this.tail.length - 200);
    };
    this.proc.stdout.on('data', keep);
    this.proc.stderr.on('data', keep);
    this.done = new Promise((resolve) => this.proc.on('exit', (code, signal) => {
      this.exited = { code, signal };
      resolve(this.exited);
    }));
    this.proc.on('error', (e) => { this.tail.push(`spawn failed: ${e.message}`); this.exited = { code: -1 }; });
  }

  alive() {
    if (this.exited) fail(`strata exited early (code ${this.exited.code}, signal ${this.exited.signal})`);
  }

  async stop() {
    if (this.exited) return;
    this.proc.kill('SIGTERM');
    const timer = sleep(STOP_GRACE_MS).then(() => 'timeout');
    if ((await Promise.race([this.done, timer])) === 'timeout') {
      log(`strata did not stop within ${STOP_GRACE_MS / 1000} s of SIGTERM: killing it`);
      this.proc.kill('SIGKILL');
      await this.done;
    }
  }
}

async function waitReady(base, strata) {
  const deadline = Date.now() + READY_MS;
  while (Date.now() < deadline) {
    strata.alive();
    try {
      if ((await fetch(`${base}/ready`, { signal: AbortSignal.timeout(5000) })).status === 200) return;
    } catch (_) { /* not listening yet */ }
    await sleep(500);
  }
  fail(`/ready did not answer 200 within ${READY_MS / 1000} s`);
}

async function backfill(base) {
  const body = JSON.stringify({ model: 'all', from: utcDay(-7), to: utcDay(0) });
  const headers = { 'Content-Type': 'application/json' };
  const anon = await request(base, '/api/backfill', { method: 'POST', headers, body });
  if (anon.status !== 401) fail(`POST /api/backfill without a token answered ${anon.status}, expected 401: ${anon.text}`);
  const auth = await request(base, '/api/backfill', {
    method: 'POST', headers: { ...headers, Authorization: `Bearer ${TOKEN}` }, body,
  });
  if (auth.status !== 202) fail(`POST /api/backfill with the admin token answered ${auth.status}, expected 202: ${auth.text}`);
  log(`backfill queued: ${auth.text}`);
}

/** Polls every endpoint the dashboard reads until each has something to show. */
async function waitForData(base, strata) {
  const checks = {
    '/api/active-users': (b) => b.status === 'ok',
    '/api/retention': (b) => b.status === 'ok',
    '/api/funnels': (b) => b.status === 'ok',
    '/api/experiments': (b) => b.status === 'ok',
    '/api/sessions': (b) => b.status === 'ok',
    '/api/realtime': (b) => b.events_counted > 0,
  };
  const pending = new Map(Object.keys(checks).map((p) => [p, 'no answer yet']));
  const started = Date.now();
  let lastReport = 0;
  while (pending.size) {
    strata.alive();
    for (const p of [...pending.keys()]) {
      try {
        const r = await request(base, p);
        if (r.status === 200 && r.body && checks[p](r.body)) {
          pending.delete(p);
          log(`${p} has data after ${Math.round((Date.now() - started) / 1000)} s`);
        } else {
          pending.set(p, r.status !== 200 ? `HTTP ${r.status}: ${r.text.slice(0, 200)}`
            : r.body && r.body.message ? `${r.body.status}: ${r.body.message}` : `events_counted ${r.body && r.body.events_counted}`);
        }
      } catch (e) {
        pending.set(p, e.message);
      }
    }
    if (!pending.size) break;
    if (Date.now() - started > WAIT_MS) {
      fail(`no data after ${WAIT_MS / 1000} s:\n${[...pending].map(([p, why]) => `  ${p}: ${why}`).join('\n')}`);
    }
    if (Date.now() - lastReport > 30_000) {
      lastReport = Date.now();
      log(`waiting for ${[...pending.keys()].join(', ')}`);
    }
    await sleep(3000);
  }
}

async function checkPage(base, screenshotDir) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--no-first-run', '--disable-component-update', '--disable-sync'],
  });
  const problems = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
    const onConsole = (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); };
    const onPageError = (e) => problems.push(`uncaught exception: ${e.message}`);
    const onFailed = (r) => problems.push(`request failed: ${r.method()} ${r.url()} (${r.failure() && r.failure().errorText})`);
    const onResponse = (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()} for ${r.request().method()} ${r.url()}`); };
    page.on('console', onConsole);
    page.on('pageerror', onPageError);
    page.on('requestfailed', onFailed);
    page.on('response', onResponse);

    log(`opening ${base}/`);
    const res = await page.goto(`${base}/`, { waitUntil: 'load' });
    if (!res || res.status() !== 200) fail(`GET / answered ${res && res.status()}`);

    const states = () => page.evaluate((names) => names.map((n) => {
      const el = document.querySelector(`section.panel[data-panel="${n}"]`);
      const msg = el && el.querySelector('.panel-message');
      return { name: n, found: Boolean(el), state: el && el.dataset.state, message: msg ? msg.textContent.trim() : '' };
    }), PANELS);
    const deadline = Date.now() + PANELS_MS;
    let last = await states();
    while (last.some((s) => s.state !== 'ok') && Date.now() < deadline) {
      await sleep(500);
      last = await states();
    }
    const missing = last.filter((s) => !s.found).map((s) => s.name);
    if (missing.length) fail(`panels missing from the page: ${missing.join(', ')}`);
    const bad = last.filter((s) => s.state !== 'ok');
    if (bad.length) {
      fail(`panels not ok after ${PANELS_MS / 1000} s:\n${bad.map((s) => `  ${s.name}: ${s.state}: ${s.message}`).join('\n')}`);
    }
    log('all eleven panels are ok');

    const figures = await page.evaluate((metrics) => Object.fromEntries(Object.entries(metrics).map(([panel, keys]) => [
      panel, Object.fromEntries(keys.map((k) => [k, [...document.querySelectorAll(
        `[data-panel="${panel}"] [data-metric="${k}"]`)].map((e) => e.textContent.trim())]))])), METRICS);
    const errors = [];
    for (const [panel, keys] of Object.entries(figures)) {
      for (const [key, texts] of Object.entries(keys)) {
        if (!texts.length) { errors.push(`${panel}: no [data-metric="${key}"]`); continue; }
        for (const t of texts) {
          const v = parseFigure(t);
          if (Number.isNaN(v)) errors.push(`${panel}: ${key} is "${t}", not a number`);
          else if ((POSITIVE[panel] || []).includes(key) && !(v > 0)) errors.push(`${panel}: ${key} is ${t}, expected more than 0`);
        }
      }
    }
    const counts = await page.evaluate(() => ({
      retentionRows: document.querySelectorAll('[data-panel="retention"] table[data-table="retention"] tbody tr:not([data-cohort="average"])').length,
      variants: document.querySelectorAll('[data-panel="experiments"] tr[data-variant]').length,
      freshness: document.querySelector('[data-panel="realtime-summary"] [data-freshness]')?.dataset.freshness ?? null,
    }));
    if (!counts.retentionRows) errors.push('retention: the table has no cohort rows');
    if (!counts.variants) errors.push('experiments: no variant rows');
    if (!['ok', 'late'].includes(counts.freshness)) errors.push(`realtime-summary: freshness badge is ${counts.freshness}`);
    if (errors.length) fail(`wrong figures:\n  ${errors.join('\n  ')}`);
    log(`figures: ${JSON.stringify(figures)}`);

    // Every kind of source the demo runs (the tracking API, the backend's order log, the
    // ad partner's CSV drops) shows rows it landed. The panel refreshes with the page.
    const sourceRows = () => page.evaluate(() => [...document.querySelectorAll('[data-panel="sources"] tr[data-source]')]
      .map((tr) => ({ name: tr.dataset.source, kind: tr.children[1].textContent.trim(), rows: tr.children[3].textContent.trim() })));
    const sourcesDeadline = Date.now() + PANELS_MS;
    let shown = await sourceRows();
    const landedAll = (rows) => ['http', 'log_file', 'file'].every((kind) =>
      rows.some((r) => r.kind === kind && parseFigure(r.rows) > 0));
    while (!landedAll(shown) && Date.now() < sourcesDeadline) {
      await page.click('#refresh');
      await sleep(3000);
      shown = await sourceRows();
    }
    if (!landedAll(shown)) fail(`sources: not every kind shows landed rows: ${JSON.stringify(shown)}`);
    log(`sources: ${JSON.stringify(shown)}`);
    log(`retention cohorts ${counts.retentionRows}, experiment variants ${counts.variants}, freshness ${counts.freshness}`);

    await mkdir(screenshotDir, { recursive: true });
    const shot = path.join(screenshotDir, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    log(`screenshot: ${shot}`);

    // Requests still in flight when the page closes are aborted by the close, not failures.
    page.off('requestfailed', onFailed);
    page.off('response', onResponse);
    page.off('console', onConsole);
    if (problems.length) fail(`the page had errors:\n  ${problems.join('\n  ')}`);
  } finally {
    await browser.close();
  }
}

async function main() {
  const screenshotDir = path.resolve(process.env.SCREENSHOT_DIR || path.join(HERE, 'artifacts'));
  if (process.env.DASHBOARD_URL) {
    await checkPage(process.env.DASHBOARD_URL.replace(/\/+$/, ''), screenshotDir);
    return;
  }
  const bin = process.env.STRATA_BIN;
  if (!bin) fail('set STRATA_BIN to the strata binary (or DASHBOARD_URL to a running server)');
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'strata-browser-'));
  const strata = new Strata(path.resolve(bin), port, dataDir);
  let ok = false;
  try {
    await waitReady(base, strata);
    log(`${base}/ready answered 200`);
    await backfill(base);
    await sendLiveEvents(base);
    await waitForData(base, strata);
    await checkPage(base, screenshotDir);
    ok = true;
  } finally {
    if (!ok && strata.tail.length) {
      console.error(`--- last lines strata printed ---\n${strata.tail.slice(-60).join('\n')}\n---`);
    }
    await strata.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
}

main().then(() => {
  console.log('dashboard: 1 passed, 0 failed');
}, (e) => {
  console.error(`[dashboard] FAILED: ${e instanceof Failure ? e.message : e.stack || e}`);
  console.log('dashboard: 0 passed, 1 failed');
  process.exitCode = 1;
});
