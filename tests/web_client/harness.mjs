// What every browser driver of the tests shares (tests/web_client/driver*.mjs for Cinny,
// tests/admin_ui/driver.mjs for the admin UIs): the JSON-line protocol with the Python side
// (tests/web_client/browser.py's Driver), the browser, and the record of what the browser
// reported that a server answer may have caused.
//
// Protocol: one JSON object per line on stdin, {"step": NAME, "args": {...}} ("args" optional);
// one JSON object per line on stdout per step: {"step", "ok", "error", "details", "events",
// "screenshots", "elapsed_ms"} ("reset_events" after a failed step: what the fresh load that
// followed it provoked). The first line out is {"ready": true, "chromium": VERSION}; a driver
// that cannot start writes {"fatal": ...}. "ok"/"error" are what the page showed; "events" are
// uncaught page errors, console errors and the homeserver's answers (non-2xx ones, or every one
// when asked), each with its errcode. The Python side judges them.
//
// Drivers elsewhere import this file by path: puppeteer-core resolves from here
// (tests/web_client/node_modules).

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

export function env(name, fallback) {
  const value = process.env[name] ?? fallback;
  if (value === undefined || value === '') throw new Error(`the driver needs ${name}`);
  return value;
}

export function check(condition, message) {
  if (!condition) throw new Error(message);
}

// ---- what the browser reports ----------------------------------------------------------------

export class Recorder {
  // hs: the homeserver's base URL (answers from elsewhere, the site itself, are not recorded);
  // everyAnswer: record 2xx/3xx answers too (the admin UI tests keep a log of every request).
  constructor(hs, { everyAnswer = false } = {}) {
    this.hs = hs;
    this.everyAnswer = everyAnswer;
    this.events = [];
    this.pending = [];
  }

  watch(name, page) {
    page.on('pageerror', (error) => {
      this.events.push({ user: name, kind: 'pageerror', text: String(error.message || error) });
    });
    page.on('console', (message) => {
      if (message.type() !== 'error') return;
      this.events.push({
        user: name,
        kind: 'console',
        text: message.text(),
        url: message.location()?.url || '',
      });
    });
    page.on('response', (response) => {
      const url = response.url();
      const request = response.request();
      if (!url.startsWith(this.hs) || request.method() === 'OPTIONS') return;
      if (response.status() < 400 && !this.everyAnswer) return;
      const event = {
        user: name,
        kind: 'answer',
        method: request.method(),
        path: url.slice(this.hs.length),
        status: response.status(),
        errcode: null,
      };
      this.events.push(event);
      if (response.status() < 400) return;
      // The errcode is in the body, read after the fact; a body the browser no longer holds
      // (or not JSON) leaves errcode null, which the judges treat as unexplained.
      this.pending.push(
        response
          .json()
          .then((body) => {
            event.errcode = body && typeof body.errcode === 'string' ? body.errcode : null;
          })
          .catch(() => {}),
      );
    });
  }

  // Wait for the errcodes read so far (or `pending` of one's own); a body the browser never
  // delivers (a request cut short by a page load) is not waited for past a few seconds.
  async settle() {
    await Promise.race([Promise.all(this.pending.splice(0)), sleep(3000)]);
  }

  async drain() {
    await this.settle();
    return this.events.splice(0);
  }
}

// ---- the API and screenshots -----------------------------------------------------------------

export async function api(hs, token, method, apiPath, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(`${hs}${apiPath}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = { raw: text };
  }
  return { status: response.status, body: json };
}

// `pages`: {name: page}; one file per page, `<step>-<name>.png` in `dir`.
export async function screenshot(dir, step, pages) {
  const files = [];
  for (const [name, page] of Object.entries(pages)) {
    const file = path.join(dir, `${step}-${name}.png`);
    await page.screenshot({ path: file });
    files.push(file);
  }
  return files;
}

// ---- the browser and the main loop -----------------------------------------------------------

// `extraArgs`: more Chromium switches (e.g. a --host-resolver-rules that fails every name but
// the loopback at once, for apps that look up their users' domains).
export async function launch(chromium, extraArgs = []) {
  return puppeteer.launch({
    executablePath: chromium,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu', ...extraArgs],
  });
}

// Answer steps until "quit" (or the end of stdin). `steps`: {name: async (args) => details};
// `reset()`: a fresh start after a failed step; `trail()`: lines added to a failed step's error
// (where the pages went); `shots(step)`: the screenshots taken after each step.
export async function serveSteps({ browser, recorder, steps, reset, shots, trail = () => [] }) {
  const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  out({ ready: true, chromium: await browser.version() });
  const lines = readline.createInterface({ input: process.stdin });
  let dirty = false;
  for await (const line of lines) {
    if (!line.trim()) continue;
    const { step, args } = JSON.parse(line);
    if (step === 'quit') break;
    const result = { step, ok: false, error: null, details: null, events: [], screenshots: [] };
    const started = Date.now();
    if (dirty) {
      await reset();
      result.reset_events = await recorder.drain();
    }
    const run = steps[step];
    if (!run) {
      result.error = `no step ${step}`;
    } else {
      try {
        result.details = await run(args || {});
        result.ok = true;
      } catch (error) {
        result.error = [String(error && error.stack ? error.stack : error), ...trail()].join('\n');
      }
    }
    await sleep(300); // answers still in flight when the step ended belong to it
    try {
      result.screenshots = await shots(step, args || {});
    } catch (error) {
      result.error = result.error || `screenshot: ${error}`;
    }
    result.events = await recorder.drain();
    result.elapsed_ms = Date.now() - started;
    dirty = !result.ok;
    out(result);
  }
  lines.close();
}

// Run `main` (which builds the pages and calls serveSteps); a failure before or outside a step
// is reported as {"fatal": ...}.
export function runDriver(main) {
  main()
    .then(() => process.exit(0))
    .catch((error) => {
      process.stdout.write(
        `${JSON.stringify({ fatal: String(error && error.stack ? error.stack : error) })}\n`,
      );
      process.exit(1);
    });
}

export function ensureDir(dir) {
  fs.mkdirSync(dir, { recursive: true });
}
