// Drives an admin web UI (synapse-admin 0.11.4 or Ketesa 1.2.1, both react-admin apps) in
// headless Chromium for tests/admin_ui: the protocol, the browser and the record of answers are
// tests/web_client/harness.mjs's (every answer of the homeserver is recorded here, 2xx too).
//
// Steps: "login" (the login form, as an operator does), "visit" {name, hash, tabs} (a page, and
// with tabs every tab it offers, a screenshot each), and one step per action of the UI (see
// `actions`), each given the ids it works on by the Python side, which seeded them through the
// client API. An action clicks through the UI and waits for the request that does the work; it
// fails if that request is not answered 2xx or the page shows no sign of it. A step's details
// carry the red notices react-admin showed meanwhile (`.RaNotification-error`, recorded as they
// appear, so one that fades before the step ends still counts).

import path from 'node:path';
import {
  Recorder,
  check,
  ensureDir,
  env,
  launch,
  runDriver,
  screenshot,
  serveSteps,
  sleep,
} from '../web_client/harness.mjs';

const CHROMIUM = env('CHROMIUM');
const SITE = env('SITE_URL');
const HS = env('HOMESERVER_URL');
const SHOTS = env('SCREENSHOT_DIR');
const UI = env('ADMIN_UI'); // "synapse-admin" or "ketesa"
const WAIT = Number(env('STEP_WAIT_MS', '10000'));

const recorder = new Recorder(HS, { everyAnswer: true });
let page;
let inFlight = 0;
let lastActivity = Date.now();

// ---- the page --------------------------------------------------------------------------------

// Installed before the app's own code: every react-admin notice as it appears, with its kind.
function recordNotices() {
  window.__notices = [];
  const seen = new WeakSet();
  const scan = () => {
    for (const node of document.querySelectorAll('[class*="RaNotification-"]')) {
      if (seen.has(node)) continue;
      seen.add(node);
      const kind = /RaNotification-(error|warning|success|info)/.exec(String(node.className));
      window.__notices.push({ kind: kind ? kind[1] : 'other', text: node.innerText.trim() });
    }
  };
  new MutationObserver(scan).observe(document, { subtree: true, childList: true });
}

async function takeNotices() {
  return page.evaluate(() => (window.__notices || []).splice(0)).catch(() => []);
}

// react-admin shows its notices one at a time, each for seconds: one a step provoked may still
// be queued when the step ends. Click each away (the operator moving on) until none shows, so
// every notice is counted in the step that caused it.
async function flushNotices(timeout = 8000) {
  const deadline = Date.now() + timeout;
  let quiet = 0;
  while (Date.now() < deadline && quiet < 2) {
    const showing = await page
      .evaluate(() =>
        Array.from(document.querySelectorAll('.MuiSnackbar-root')).some((n) => n.getClientRects().length > 0),
      )
      .catch(() => false);
    if (showing) {
      quiet = 0;
      await page.mouse.click(700, 20).catch(() => {});
      await sleep(300);
    } else {
      quiet += 1;
      await sleep(150);
    }
  }
  return takeNotices();
}

// `waiting` (a wait for something in the page), unless react-admin shows a red notice first:
// then the step fails at once with the notice's text rather than at the end of the wait.
async function unlessRedNotice(waiting) {
  const red = page.waitForFunction(
    () => {
      const notice = (window.__notices || []).find((n) => n.kind === 'error');
      return notice ? notice.text : null;
    },
    { timeout: WAIT + 1000 },
  );
  red.catch(() => {});
  waiting.catch(() => {});
  const winner = await Promise.race([waiting.then((v) => ({ v })), red.then((h) => ({ h }))]);
  if ('v' in winner) return winner.v;
  const text = await winner.h.jsonValue().catch(() => '?');
  throw new Error(`the page showed a red notice instead: ${text}`);
}

// Quiet: no request to the homeserver in flight, none started or ended for `quietMs`.
async function settle(quietMs = 250, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  while (Date.now() < deadline) {
    if (inFlight === 0 && Date.now() - lastActivity >= quietMs) return;
    await sleep(100);
  }
}

async function go(hash) {
  lastActivity = Date.now(); // quiet is counted from here: the new page's requests start late
  await page.evaluate((h) => {
    window.location.hash = h;
  }, hash);
  // A list may add its query (sort, filter) to the address.
  await page
    .waitForFunction((h) => window.location.hash.split('?')[0] === h, { timeout: WAIT }, hash)
    .catch((error) => {
      throw new Error(`the page did not go to ${hash} (${error.message})`);
    });
  await settle();
}

// A visible button or link whose aria-label or text is `label` (case-insensitive), optionally
// inside `within` (a CSS selector, e.g. a dialog).
async function findControl(label, { within = 'body', timeout = WAIT } = {}) {
  const handle = await unlessRedNotice(page.waitForFunction(
    (wanted, scope) => {
      const norm = (s) => String(s || '').trim().replace(/\s+/g, ' ').toLowerCase();
      const roots = Array.from(document.querySelectorAll(scope));
      for (const root of roots.reverse()) {
        const found = Array.from(root.querySelectorAll('button, a, [role=button], [role=menuitem]')).find(
          (b) =>
            b.offsetParent !== null &&
            !b.disabled &&
            (norm(b.getAttribute('aria-label')) === norm(wanted) || norm(b.innerText) === norm(wanted)),
        );
        if (found) return found;
      }
      return null;
    },
    { timeout },
    label,
    within,
  )).catch((error) => {
    throw new Error(`no enabled control "${label}" in ${within} (${error.message})`);
  });
  return handle.asElement();
}

async function click(label, options) {
  await (await findControl(label, options)).evaluate((b) => b.click());
}

// A text field, filled in one change: the native value setter, then the "input" event React
// listens to (typing key by key costs a render of the whole form per key, seconds per field).
async function fill(selector, text) {
  const input = await page.waitForSelector(selector, { visible: true, timeout: WAIT });
  await setInput(input, String(text));
}

// Focused, changed, left: what typing then moving on does (forms check some fields on blur).
async function setInput(input, text) {
  await input.evaluate((field, value) => {
    field.focus();
    const proto = field instanceof HTMLTextAreaElement ? HTMLTextAreaElement : HTMLInputElement;
    Object.getOwnPropertyDescriptor(proto.prototype, 'value').set.call(field, value);
    field.dispatchEvent(new Event('input', { bubbles: true }));
    field.blur();
  }, text);
}

async function toggle(selector, wanted) {
  const input = await page.waitForSelector(selector, { timeout: WAIT });
  if ((await input.evaluate((box) => box.checked)) !== wanted) await input.evaluate((box) => box.click());
}

// The answer of the homeserver to `method` on a path matching `pattern` that `action` provokes;
// it must be 2xx. react-admin's undoable edits and deletes send their request only once the
// notice offering "Undo" closes; a click away from it closes it (as an operator clicking on),
// so while waiting the driver clicks on the empty middle of the app bar now and then.
async function answerTo(method, pattern, action, timeout = WAIT) {
  let answered = false;
  const waiting = page.waitForResponse(
    (response) =>
      response.request().method() === method &&
      response.url().startsWith(HS) &&
      pattern.test(decodeURIComponent(response.url().slice(HS.length))),
    { timeout },
  );
  waiting.then(() => { answered = true; }, () => { answered = true; });
  await action();
  const clickingAway = (async () => {
    await sleep(300);
    while (!answered) {
      await page.mouse.click(700, 20).catch(() => {});
      await sleep(400);
    }
  })();
  let response;
  try {
    response = await unlessRedNotice(waiting);
  } catch (error) {
    throw new Error(`the UI sent no ${method} ${pattern} (${error.message})`);
  } finally {
    answered = true;
    await clickingAway;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  check(
    response.status() < 300,
    `${method} ${decodeURIComponent(response.url().slice(HS.length))} answered ${response.status()} ` +
      `${JSON.stringify(body)}`,
  );
  await settle();
  return body;
}

// A datetime-local field's value for `msAgo` milliseconds before now.
const localTime = (msAgo) =>
  new Date(Date.now() - msAgo - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16);
const DAY = 86400000;

const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const userHash = (userId) => `#/users/${encodeURIComponent(userId)}`;
const roomHash = (roomId) => `#/rooms/${encodeURIComponent(roomId)}/show`;
const confirmDialog = async (label = 'Confirm') => click(label, { within: '[role=dialog]' });

// ---- steps both UIs share --------------------------------------------------------------------

const common = {
  // The login form with the user ID and password (the homeserver URL is config.json's).
  async login({ user, password }) {
    await page.goto(SITE, { waitUntil: 'domcontentloaded' });
    await fill('input[name=username]', user);
    await fill('input[name=password]', password);
    await answerTo('POST', /\/_matrix\/client\/(r0|v3)\/login$/, () => click('Sign in'));
    await page.waitForFunction(() => window.location.hash.startsWith('#/users'), { timeout: WAIT });
    await settle();
    return { at: await page.evaluate(() => window.location.hash) };
  },

  // A page, then (with `tabs`) each tab it offers: a screenshot of each in details.
  async visit({ name, hash, tabs, expect }) {
    await go(hash);
    if (expect) await waitText(expect);
    const visited = [hash];
    const shots = [];
    if (tabs) {
      await page.waitForSelector('a.MuiTab-root[href^="#/"]', { timeout: WAIT });
      const links = await page.evaluate(() =>
        Array.from(document.querySelectorAll('a[role=tab][href^="#/"], a.MuiTab-root[href^="#/"]'))
          .filter((a) => a.offsetParent !== null)
          .map((a) => ({ href: a.getAttribute('href'), label: a.innerText.trim() })),
      );
      for (const { href, label } of links) {
        if (href === hash) continue;
        await go(href);
        visited.push(href);
        const tab = label.toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '');
        shots.push(...(await screenshot(SHOTS, `${name}-${tab}`, { [UI]: page })));
      }
      await go(hash);
    }
    return { visited, tab_screenshots: shots };
  },
};

async function waitText(text, timeout = WAIT) {
  await unlessRedNotice(
    page.waitForFunction((wanted) => document.body.innerText.includes(wanted), { timeout }, text),
  ).catch((error) => {
    throw new Error(`the page never showed "${text}" (${error.message})`);
  });
}

// ---- the actions of each UI ------------------------------------------------------------------

const synapseAdmin = {
  async create_user({ user, password }) {
    await go('#/users/create');
    await fill('input[name=id]', user.slice(1).split(':')[0]);
    await fill('input[name=displayname]', 'Made in the UI');
    await fill('input[name=password]', password);
    await answerTo('PUT', new RegExp(`/_synapse/admin/v2/users/${esc(user)}$`), () => click('Save'));
    return {};
  },

  async reset_password({ user, password }) {
    await go(userHash(user));
    await fill('input[name=password]', password);
    await answerTo('PUT', new RegExp(`/_synapse/admin/v2/users/${esc(user)}$`), () => click('Save'));
    return {};
  },

  async deactivate_user({ user }) {
    await go(userHash(user));
    await toggle('input[name=deactivated]', true);
    await answerTo('PUT', new RegExp(`/_synapse/admin/v2/users/${esc(user)}$`), () => click('Save'));
    return {};
  },

  // "Delete" is deactivation with erase, undoable for a few seconds.
  async erase_user({ user }) {
    await go(userHash(user));
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/deactivate/${esc(user)}$`), () => click('Delete'));
    return {};
  },

  async server_notice({ user, text }) {
    await go(userHash(user));
    await click('Send server notices');
    await fill('[role=dialog] textarea[name=body]', text);
    await answerTo('POST', /\/_synapse\/admin\/v1\/send_server_notice$/, () =>
      click('Send note', { within: '[role=dialog]' }),
    );
    return {};
  },

  async delete_device({ user, device }) {
    await go(`${userHash(user)}/devices`);
    await waitText(device);
    await clickRowButton(device, 'Remove');
    await answerTo('DELETE', new RegExp(`/_synapse/admin/v2/users/${esc(user)}/devices/${esc(device)}$`), () =>
      confirmDialog(),
    );
    return {};
  },

  async create_token({ token }) {
    await go('#/registration_tokens/create');
    await fill('input[name=token]', token);
    await fill('input[name=uses_allowed]', '3');
    await answerTo('POST', /\/_synapse\/admin\/v1\/registration_tokens\/new$/, () => click('Save'));
    return {};
  },

  async delete_token({ token }) {
    await go(`#/registration_tokens/${encodeURIComponent(token)}`);
    await answerTo('DELETE', new RegExp(`/_synapse/admin/v1/registration_tokens/${esc(token)}$`), () => click('Delete'));
    return {};
  },

  // The report made through the client API is in the list (a row naming its reporter); its
  // page opens and shows the reason.
  async see_report({ reporter, reason }) {
    await go('#/reports');
    await waitText(reporter);
    await clickRowText(reporter);
    await page.waitForFunction(() => /#\/reports\/[^/]+\/show/.test(window.location.hash), { timeout: WAIT });
    await settle();
    await waitText(reason);
    return { at: await page.evaluate(() => window.location.hash) };
  },

  async delete_user_media({ user, media }) {
    await go(`${userHash(user)}/media`);
    await waitText(media);
    await clickRowButton(media, 'Delete');
    await answerTo('DELETE', new RegExp(`/_synapse/admin/v1/media/[^/]+/${esc(media)}$`), () => confirmDialog());
    return {};
  },

  async delete_old_media() {
    await go('#/user_media_statistics');
    await click('Delete media');
    // Unused for a day: nothing the seed made (the form's button stays off until a change).
    await fill('[role=dialog] input[name=before_ts]', localTime(DAY));
    await answerTo('POST', /\/_synapse\/admin\/v1\/media\/[^/]+\/delete\?/, () =>
      click('Delete media', { within: '[role=dialog]' }),
    );
    return {};
  },

  async publish_room({ room }) {
    await go(roomHash(room));
    await answerTo('PUT', new RegExp(`/directory/list/room/${esc(room)}$`), () => click('Publish in room directory'));
    return {};
  },

  async delete_room({ room }) {
    await go(roomHash(room));
    await click('Delete');
    await answerTo('DELETE', new RegExp(`/_synapse/admin/v2/rooms/${esc(room)}$`), () => confirmDialog());
    return {};
  },
};

// Ketesa 1.2.1: the same react-admin resources as synapse-admin, and more.
const ketesa = {
  create_user: synapseAdmin.create_user,
  deactivate_user: synapseAdmin.deactivate_user,
  server_notice: synapseAdmin.server_notice,
  delete_device: synapseAdmin.delete_device,
  create_token: synapseAdmin.create_token,
  delete_token: synapseAdmin.delete_token,
  see_report: synapseAdmin.see_report,
  delete_user_media: synapseAdmin.delete_user_media,
  publish_room: synapseAdmin.publish_room,

  // Its own dialog (new password, log out devices) on the user's page.
  async reset_password({ user, password }) {
    await go(userHash(user));
    await click('Reset password');
    await fill('[role=dialog] input[type=text]', password);
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/reset_password/${esc(user)}$`), () =>
      confirmDialog(),
    );
    return {};
  },

  // "Login as user": an access token for the user, shown to the operator.
  async login_as({ user }) {
    await go(userHash(user));
    await click('Login as user');
    const body = await answerTo('POST', new RegExp(`/_synapse/admin/v1/users/${esc(user)}/login$`), () =>
      confirmDialog(),
    );
    check(body && typeof body.access_token === 'string', `no access_token in ${JSON.stringify(body)}`);
    return { access_token: body.access_token };
  },

  async shadow_ban({ user }) {
    await go(userHash(user));
    await toggle('input[name=shadow_banned]', true);
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/users/${esc(user)}/shadow_ban$`), () => click('Save'));
    return {};
  },

  // The two number fields of the user's form: messages per second and burst count.
  async override_rate_limits({ user, per_second, burst }) {
    await go(userHash(user));
    await page.waitForFunction(() => document.querySelector('input[name=id]')?.value, { timeout: WAIT });
    await click('Rate limits');
    await page.waitForFunction(
      () => Array.from(document.querySelectorAll('input[type=number]')).filter((i) => i.getClientRects().length).length === 2,
      { timeout: WAIT },
    );
    await settle();
    const fields = (await page.$$('input[type=number]')).slice(-2);
    check(fields.length === 2, `${fields.length} number fields on the rate limits tab`);
    await setInput(fields[0], String(per_second));
    await setInput(fields[1], String(burst));
    const body = await answerTo(
      'POST',
      new RegExp(`/_synapse/admin/v1/users/${esc(user)}/override_ratelimit$`),
      () => click('Save'),
    );
    return { answer: body };
  },

  // "Delete" on the user's page: deactivate with erase (media and redaction left unticked).
  async erase_user({ user }) {
    await go(userHash(user));
    await click('Delete');
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/deactivate/${esc(user)}$`), () => confirmDialog());
    return {};
  },

  // Shown only once the room's block status has been read: "Block" (a dialog), then "Unblock".
  async block_room({ room }) {
    await go(roomHash(room));
    await click('Block');
    await answerTo('PUT', new RegExp(`/_synapse/admin/v1/rooms/${esc(room)}/block$`), () => confirmDialog());
    await findControl('Unblock');
    return {};
  },

  async unblock_room({ room }) {
    await go(roomHash(room));
    await answerTo('PUT', new RegExp(`/_synapse/admin/v1/rooms/${esc(room)}/block$`), () => click('Unblock'));
    await findControl('Block');
    return {};
  },

  async join_user({ room, user }) {
    await go(roomHash(room));
    await click('Add user');
    await fill('[role=dialog] input[type=text]', user);
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/join/${esc(room)}$`), () =>
      click('Add', { within: '[role=dialog]' }),
    );
    return {};
  },

  async make_room_admin({ room, user }) {
    await go(roomHash(room));
    await click('Assign admin');
    await fill('[role=dialog] input[type=text]', user);
    await answerTo('POST', new RegExp(`/_synapse/admin/v1/rooms/${esc(room)}/make_room_admin$`), () =>
      click('Make admin', { within: '[role=dialog]' }),
    );
    return {};
  },

  // Up to two minutes from now (the field counts whole minutes, and the seeded messages may be
  // younger than a minute on a fast run): every message but the newest, local users' included.
  async purge_history({ room }) {
    await go(roomHash(room));
    await click('Purge history');
    await fill('[role=dialog] input[type=datetime-local]', localTime(-120000));
    await toggle('[role=dialog] input[type=checkbox]', true);
    const body = await answerTo('POST', new RegExp(`/_synapse/admin/v1/purge_history/${esc(room)}$`), () =>
      confirmDialog(),
    );
    check(body && body.purge_id, `no purge_id in ${JSON.stringify(body)}`);
    return { purge_id: body.purge_id };
  },

  // Deletion with "block" ticked; Ketesa then follows the deletion's status.
  async delete_room({ room }) {
    await go(roomHash(room));
    await click('Delete');
    await toggle('[role=dialog] input[name=block]', true);
    await answerTo('DELETE', new RegExp(`/_synapse/admin/v2/rooms/${esc(room)}$`), () => confirmDialog());
    return {};
  },

  async purge_remote_media() {
    await go('#/user_media_statistics');
    await click('Purge remote media');
    await fill('[role=dialog] input[name=before_ts]', localTime(DAY));
    await answerTo('POST', /\/_synapse\/admin\/v1\/purge_media_cache\?/, () =>
      click('Purge remote media', { within: '[role=dialog]' }),
    );
    return {};
  },

  async delete_old_media() {
    await go('#/user_media_statistics');
    await click('Delete media');
    // Unused for a day: nothing the seed made (the form's button stays off until a change).
    await fill('[role=dialog] input[name=before_ts]', localTime(DAY));
    await answerTo('POST', /\/_synapse\/admin\/v1\/media\/delete\?/, () => click('Delete media', { within: '[role=dialog]' }));
    return {};
  },
};


// The button labelled `label` in the table row that shows `text`.
async function clickRowButton(text, label) {
  const handle = await unlessRedNotice(page.waitForFunction(
    (wanted, name) => {
      const row = Array.from(document.querySelectorAll('tr')).find((r) => r.innerText.includes(wanted));
      if (!row) return null;
      const norm = (s) => String(s || '').trim().toLowerCase();
      return (
        Array.from(row.querySelectorAll('button')).find(
          (b) => norm(b.getAttribute('aria-label')) === norm(name) || norm(b.innerText) === norm(name),
        ) || null
      );
    },
    { timeout: WAIT },
    text,
    label,
  ));
  await handle.asElement().evaluate((b) => b.click());
}

async function clickRowText(text) {
  const handle = await unlessRedNotice(page.waitForFunction(
    (wanted) =>
      Array.from(document.querySelectorAll('tr td')).find((cell) => cell.innerText.includes(wanted)) || null,
    { timeout: WAIT },
    text,
  ));
  await handle.asElement().evaluate((cell) => cell.click());
}

// ---- main ------------------------------------------------------------------------------------

async function main() {
  ensureDir(SHOTS);
  // Ketesa looks up https://<server name>/.well-known/matrix/client for the user ID typed in;
  // the test's server names resolve nowhere, and should fail at once rather than wait on DNS.
  const browser = await launch(CHROMIUM, ['--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1']);
  const context = await browser.createBrowserContext();
  page = await context.newPage();
  await page.setViewport({ width: 1400, height: 900 });
  await page.evaluateOnNewDocument(recordNotices);
  recorder.watch(UI, page);
  // A native confirm() ("leave with unsaved changes?") would block the page: accept it, as an
  // operator moving on does, and keep it in the record.
  page.on('dialog', (dialog) => {
    recorder.events.push({ user: UI, kind: 'dialog', text: dialog.message() });
    dialog.accept().catch(() => {});
  });
  const counts = (delta) => (request) => {
    if (!request.url().startsWith(HS)) return;
    inFlight += delta;
    lastActivity = Date.now();
  };
  page.on('request', counts(1));
  page.on('requestfinished', counts(-1));
  page.on('requestfailed', counts(-1));
  const actions = UI === 'ketesa' ? ketesa : synapseAdmin;
  const steps = {};
  for (const [name, run] of Object.entries({ ...common, ...actions })) {
    steps[name] = async (args) => {
      await takeNotices();
      let details;
      try {
        details = await run(args);
      } catch (error) {
        const notices = await flushNotices();
        if (notices.length) error.message += `\nnotices: ${JSON.stringify(notices)}`;
        throw error;
      }
      return { ...details, notices: await flushNotices() };
    };
  }
  await serveSteps({
    browser,
    recorder,
    steps,
    shots: (step, args) => screenshot(SHOTS, args.name || step, { [UI]: page }),
    // After a failed step: back to the users list (same session), so one failure does not
    // leave a dialog open for the next.
    reset: async () => {
      await page.keyboard.press('Escape').catch(() => {});
      await go('#/users').catch(() => {});
      await takeNotices();
    },
    trail: () => [`the page was at ${page.url()}`],
  });
  await browser.close();
}

runDriver(main);
