// Drives the built Cinny in headless Chromium for tests/web_client/test_cinny_issue16.py (issue
// 16: search, user directory, a space's room list, threads, unread badges).
//
// Same protocol as driver.mjs (which runs its own steps on import, so nothing can be imported
// from it): one JSON object per line on stdin, {"step": NAME}; one JSON object per line on
// stdout per step: {"step", "ok", "error", "details", "events", "screenshots", "elapsed_ms"}.
// "events" are what the browser reported that a server answer may have caused (uncaught page
// errors, console errors, non-2xx answers of the homeserver with their errcode); the Python
// side judges them with test_cinny.py's rules.
//
// The accounts and the rooms each scenario starts from are made through the API (the register
// and create-room forms are issue 15's scenarios); each page is then signed in the way Cinny
// keeps a session (its four localStorage keys), and everything the scenario is about happens
// in the page.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import puppeteer from 'puppeteer-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`driver16.mjs needs ${name}`);
  return value;
};
const CHROMIUM = env('CHROMIUM');
const SITE = env('SITE_URL');
const HS = env('HOMESERVER_URL');
const SERVER_NAME = env('SERVER_NAME');
const SHOTS = env('SCREENSHOT_DIR');
const WAIT = Number(process.env.STEP_WAIT_MS || 20000);

// Pages for alice and bob; carol and dave exist for the directory (API only).
const USERS = ['alice', 'bob'];
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave'];
const userId = (name) => `@${name}:${SERVER_NAME}`;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const state = { pages: {}, sessions: {}, events: [], pending: [], rooms: {}, txn: 0 };

// ---- what the browser reports (as driver.mjs) ------------------------------------------------

function watch(name, page) {
  page.on('pageerror', (error) => {
    state.events.push({ user: name, kind: 'pageerror', text: String(error.message || error) });
  });
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    state.events.push({ user: name, kind: 'console', text: message.text() });
  });
  page.on('response', (response) => {
    const url = response.url();
    if (!url.startsWith(HS) || response.status() < 400) return;
    const request = response.request();
    const event = {
      user: name,
      kind: 'answer',
      method: request.method(),
      path: url.slice(HS.length),
      status: response.status(),
      errcode: null,
    };
    state.events.push(event);
    state.pending.push(
      response
        .json()
        .then((body) => {
          event.errcode = body && typeof body.errcode === 'string' ? body.errcode : null;
        })
        .catch(() => {}),
    );
  });
}

async function drainEvents() {
  await Promise.all(state.pending.splice(0));
  return state.events.splice(0);
}

// ---- the API, for what the scenarios start from -------------------------------------------

async function api(name, method, apiPath, body) {
  const headers = { 'Content-Type': 'application/json' };
  if (name) headers.Authorization = `Bearer ${state.sessions[name].access_token}`;
  const response = await fetch(`${HS}${apiPath}`, {
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

async function ok(name, method, apiPath, body) {
  const answer = await api(name, method, apiPath, body);
  check(answer.status === 200, `${method} ${apiPath} -> ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

const room = (roomId) => `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;

async function register(name) {
  const body = { username: name, password: `${name}-Password-123`, initial_device_display_name: 'Cinny Web' };
  const first = await api(null, 'POST', '/_matrix/client/v3/register', body);
  check(first.status === 401 && first.body.session, `register ${name}: ${JSON.stringify(first)}`);
  const done = await api(null, 'POST', '/_matrix/client/v3/register', {
    ...body,
    auth: { type: 'm.login.dummy', session: first.body.session },
  });
  check(done.status === 200, `register ${name}: ${JSON.stringify(done)}`);
  state.sessions[name] = done.body;
}

async function createRoom(name, options) {
  return (await ok(name, 'POST', '/_matrix/client/v3/createRoom', options)).room_id;
}

async function join(name, roomId) {
  await ok(name, 'POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {});
}

async function sendApi(name, roomId, content, type = 'm.room.message') {
  state.txn += 1;
  return (await ok(name, 'PUT', `${room(roomId)}/send/${type}/t16-${state.txn}`, content)).event_id;
}

// ---- page helpers ---------------------------------------------------------------------------

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function findButton(page, text, timeout = WAIT) {
  const handle = await page.waitForFunction(
    (wanted) =>
      Array.from(document.querySelectorAll('button')).find(
        (b) => b.offsetParent !== null && b.innerText.trim() === wanted,
      ) || null,
    { timeout },
    text,
  );
  return handle.asElement();
}

// A DOM click (Cinny's dialogs open with a scale-up animation a mouse click can miss).
async function click(page, text, timeout = WAIT) {
  await (await findButton(page, text, timeout)).evaluate((b) => b.click());
}

async function waitText(page, text, timeout = WAIT) {
  await page.waitForFunction((wanted) => document.body.innerText.includes(wanted), { timeout }, text);
}

async function go(page, hash) {
  await page.evaluate((h) => {
    window.location.hash = h;
  }, hash);
}

const roomHash = (kind, roomId) => `#/${kind}/${encodeURIComponent(roomId)}/`;

async function composer(page) {
  return page.waitForSelector('[data-editable-name=RoomInput]', { visible: true, timeout: WAIT });
}

async function send(page, text) {
  const editor = await composer(page);
  await editor.click();
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

async function screenshot(step, names) {
  const files = [];
  for (const name of names) {
    const file = path.join(SHOTS, `${step}-${name}.png`);
    await state.pages[name].screenshot({ path: file });
    files.push(file);
  }
  return files;
}

// Sign the page in as Cinny keeps a session, then load the app.
async function signIn(name) {
  const page = state.pages[name];
  const session = state.sessions[name];
  await page.goto(`${SITE}/#/login/`, { waitUntil: 'domcontentloaded' });
  await page.evaluate(
    (s, hs) => {
      localStorage.setItem('cinny_access_token', s.access_token);
      localStorage.setItem('cinny_device_id', s.device_id);
      localStorage.setItem('cinny_user_id', s.user_id);
      localStorage.setItem('cinny_hs_base_url', hs);
    },
    session,
    HS,
  );
  await page.goto(`${SITE}/#/home/`, { waitUntil: 'domcontentloaded' });
  await page.reload({ waitUntil: 'domcontentloaded' });
  await findButton(page, 'Create Room');
}

// ---- the steps ------------------------------------------------------------------------------

const steps = {
  // Four accounts; alice and bob share a room ("Garden Talk"), carol is in a public room
  // alone, dave shares nothing with anyone. alice's and bob's pages are signed in.
  async setup() {
    for (const name of ACCOUNTS) await register(name);
    state.rooms.talk = await createRoom('alice', {
      name: 'Garden Talk',
      topic: 'Where issue 16 is tried',
      invite: [userId('bob')],
    });
    await join('bob', state.rooms.talk);
    state.rooms.plaza = await createRoom('carol', { name: 'Plaza', preset: 'public_chat' });
    state.rooms.dave = await createRoom('dave', { name: 'Dave alone' });
    await Promise.all(USERS.map(signIn));
    return { rooms: state.rooms };
  },

  // alice searches her messages from Cinny's "Message Search" page; the result is the
  // message with the word, in its room, and not the one without it.
  async search() {
    const alice = state.pages.alice;
    const talk = state.rooms.talk;
    await sendApi('bob', talk, { msgtype: 'm.text', body: 'A heron landed by the pond this morning' });
    await sendApi('alice', talk, { msgtype: 'm.text', body: 'The tulips are late this year' });
    await go(alice, '#/home/search/');
    const input = await alice.waitForSelector('input[name=searchInput], input[type=search], input', {
      visible: true,
      timeout: WAIT,
    });
    await input.type('heron');
    await alice.keyboard.press('Enter');
    await waitText(alice, 'landed by the pond this morning');
    const text = await alice.evaluate(() => document.body.innerText);
    check(text.includes('Garden Talk'), 'the search result does not name its room');
    check(!text.includes('The tulips are late'), 'a message without the word is a result');
    return {};
  },

  // alice opens the invite dialog of a new room and types part of a name: the directory finds
  // bob (they share a room) and carol (she is in a public room), not dave.
  async directory() {
    const alice = state.pages.alice;
    state.rooms.picnic = await createRoom('alice', { name: 'Picnic' });
    await go(alice, roomHash('home', state.rooms.picnic));
    await composer(alice);
    const results = {};
    for (const [term, wanted] of [
      ['bo', userId('bob')],
      ['caro', userId('carol')],
    ]) {
      await click(alice, 'Invite Member');
      const input = await alice.waitForSelector(
        'xpath/.//label[normalize-space(.)="Name or userId"]/following::input[1]',
        { timeout: WAIT },
      );
      await input.type(term);
      await alice.keyboard.press('Enter');
      await waitText(alice, wanted);
      results[term] = wanted;
      await screenshot(`directory-${term}`, ['alice']);
      await closeDialog(alice, 'Invite to Picnic');
    }
    await click(alice, 'Invite Member');
    const input = await alice.waitForSelector(
      'xpath/.//label[normalize-space(.)="Name or userId"]/following::input[1]',
      { timeout: WAIT },
    );
    await input.type('dave');
    await alice.keyboard.press('Enter');
    await waitText(alice, 'No matches found for "dave"!');
    await screenshot('directory-dave', ['alice']);
    await closeDialog(alice, 'Invite to Picnic');
    return results;
  },
};

// Cinny's dialogs have their title (h2 or h4) in a header whose last button is "close".
async function closeDialog(page, title) {
  const selector = '[role=dialog] h2, [role=dialog] h4';
  const closed = await page.evaluate(
    (sel, wanted) => {
      const head = Array.from(document.querySelectorAll(sel))
        .filter((h) => h.innerText.trim() === wanted)
        .pop();
      if (!head) return false;
      let header = head.parentElement;
      while (header && !header.querySelector('button')) header = header.parentElement;
      const buttons = header.querySelectorAll('button');
      buttons[buttons.length - 1].click();
      return true;
    },
    selector,
    title,
  );
  check(closed, `no dialog "${title}" to close`);
  await page.waitForFunction(
    (sel, wanted) =>
      !Array.from(document.querySelectorAll(sel)).some((h) => h.innerText.trim() === wanted),
    { timeout: WAIT },
    selector,
    title,
  );
}

// A failed step may leave a dialog open or a page half-way: the next starts from a fresh load.
async function reset() {
  for (const name of USERS) {
    const page = state.pages[name];
    if (!page.url().startsWith(SITE)) continue;
    await page.reload({ waitUntil: 'domcontentloaded' }).catch(() => {});
    await findButton(page, 'Create Room').catch(() => {});
  }
}

// The server lets in-flight requests finish when it stops; a /sync long-poll the closed browser
// left waits out its timeout. Something new in each user's /sync ends those at once.
async function wakeSyncs() {
  await Promise.all(
    USERS.filter((name) => state.sessions[name]).map((name) =>
      api(name, 'PUT', `/_matrix/client/v3/user/${encodeURIComponent(userId(name))}/account_data/org.test.bye`, {}),
    ),
  );
}

// ---- main loop ------------------------------------------------------------------------------

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-dev-shm-usage', '--disable-gpu'],
  });
  for (const name of USERS) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    watch(name, page);
    state.pages[name] = page;
  }
  const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
  out({ ready: true, chromium: await browser.version() });

  const lines = readline.createInterface({ input: process.stdin });
  let dirty = false;
  for await (const line of lines) {
    if (!line.trim()) continue;
    const { step } = JSON.parse(line);
    if (step === 'quit') break;
    const result = { step, ok: false, error: null, details: null, events: [], screenshots: [] };
    const started = Date.now();
    if (dirty) {
      await reset();
      result.reset_events = await drainEvents();
    }
    const run = steps[step];
    if (!run) {
      result.error = `no step ${step}`;
    } else {
      try {
        result.details = await run();
        result.ok = true;
      } catch (error) {
        result.error = String(error && error.stack ? error.stack : error);
      }
    }
    await sleep(300); // answers still in flight when the step ended belong to it
    try {
      result.screenshots = await screenshot(step, USERS);
    } catch (error) {
      result.error = result.error || `screenshot: ${error}`;
    }
    result.events = await drainEvents();
    result.elapsed_ms = Date.now() - started;
    dirty = !result.ok;
    out(result);
  }
  lines.close();
  await browser.close();
  await wakeSyncs().catch(() => {});
  process.exit(0);
}

main().catch((error) => {
  process.stdout.write(`${JSON.stringify({ fatal: String(error && error.stack ? error.stack : error) })}\n`);
  process.exit(1);
});
