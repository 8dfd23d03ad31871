// Drives the built Cinny in headless Chromium for tests/web_client/test_cinny.py.
//
// The protocol, the browser and the record of what it reports are harness.mjs's: one JSON line
// per step each way; "events" is everything the browser reported while the step ran that may
// have been caused by a server answer (uncaught page errors, console errors, and non-2xx answers
// of the homeserver with their errcode). The Python side judges the events, so the rules of what
// counts as harmless live in one place (test_cinny.py).
//
// One browser, one context per user (separate sessions and storage), kept for the whole run:
// later steps build on the rooms and keys of earlier ones.

import path from 'node:path';
import { WAIT, closeDialog } from './cinny_ui.mjs';
import {
  Recorder,
  api as apiCall,
  check,
  ensureDir,
  env,
  launch,
  runDriver,
  screenshot as shoot,
  serveSteps,
  sleep,
} from './harness.mjs';

const CHROMIUM = env('CHROMIUM');
const SITE = env('SITE_URL');
const HS = env('HOMESERVER_URL');
const SERVER_NAME = env('SERVER_NAME');
const SHOTS = env('SCREENSHOT_DIR');
const IMAGE = env('IMAGE_PATH');

const USERS = ['alice', 'bob'];
const password = (name) => `${name}-Password-123`;
const userId = (name) => `@${name}:${SERVER_NAME}`;

const state = {
  pages: {},
  tokens: {},
  pending: [],
  rooms: {},
  nav: {},
  syncedAccountData: {},
  syncRequests: {},
  accountDataTrail: {},
  // createRoom requests each page sent (the DM step tells a bounce before one from after)
  createRooms: {},
};
const recorder = new Recorder(HS);

// ---- what the browser reports ---------------------------------------------------------------

// Page errors, console errors and non-2xx answers go to the recorder (harness.mjs); this adds
// where each page went and what its /sync delivered.
function watch(name, page) {
  recorder.watch(name, page);
  // Where the page went (the hash router), for the message of a failed step.
  state.nav[name] = [];
  page.on('framenavigated', (frame) => {
    if (frame !== page.mainFrame()) return;
    const trail = state.nav[name];
    trail.push(`${new Date().toISOString().slice(17, 23)} ${frame.url().split('#')[1] || '/'}`);
    if (trail.length > 8) trail.shift();
  });
  // The account data each user's /sync delivered, and in answer to which of the page's /sync
  // requests (numbered as sent): cross-signing setup waits on it.
  state.syncedAccountData[name] = new Map();
  state.syncRequests[name] = 0;
  const syncNumber = new WeakMap();
  // When account data went up and came back by /sync (and rooms were created), for the
  // message of a failed step.
  state.accountDataTrail[name] = [];
  const trail = (text) =>
    state.accountDataTrail[name].push(`${new Date().toISOString().slice(17, 23)} ${text}`);
  const isSync = (url) => url.startsWith(`${HS}/_matrix/client/v3/sync`);
  state.createRooms[name] = 0;
  page.on('request', (request) => {
    if (request.method() === 'POST' && request.url().endsWith('/createRoom')) {
      state.createRooms[name] += 1;
    }
    if (!isSync(request.url())) return;
    state.syncRequests[name] += 1;
    syncNumber.set(request, state.syncRequests[name]);
  });
  page.on('response', (response) => {
    const url = response.url();
    if (response.request().method() === 'PUT' && url.includes('/account_data/')) {
      trail(`PUT ${decodeURIComponent(url.split('/account_data/')[1])}: ${response.status()}`);
    }
    if (response.request().method() === 'POST' && url.endsWith('/createRoom')) {
      trail(`POST createRoom: ${response.status()}`);
    }
    if (!isSync(url) || response.status() !== 200) return;
    const number = syncNumber.get(response.request());
    state.pending.push(
      response
        .json()
        .then((body) => {
          const types = (body?.account_data?.events || []).map((event) => event.type);
          for (const type of types) {
            if (!state.syncedAccountData[name].has(type)) state.syncedAccountData[name].set(type, number);
          }
          if (types.length) trail(`/sync delivered ${types.join(', ')}`);
        })
        .catch(() => {}),
    );
  });
}

// Whether the page has taken in the account data `type` from its /sync: the client reads a
// /sync answer whole before it sends the next /sync, so a later request means it has.
function syncedIn(name, type) {
  const number = state.syncedAccountData[name].get(type);
  return number !== undefined && state.syncRequests[name] > number;
}

// ---- page helpers ---------------------------------------------------------------------------

async function button(page, text, timeout = WAIT) {
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

// A DOM click, not a mouse one at the button's centre: Cinny's dialogs open with a scale-up
// animation, and a mouse click during it can land beside a button that is already there.
async function click(page, text, timeout = WAIT) {
  await (await button(page, text, timeout)).evaluate((b) => b.click());
}

async function waitText(page, text, timeout = WAIT) {
  await page.waitForFunction((wanted) => document.body.innerText.includes(wanted), { timeout }, text);
}

async function bodyText(page) {
  return page.evaluate(() => document.body.innerText);
}

// Cinny sometimes moves on by itself a moment after a route change (back to the last room of a
// section, after a dialog closes); the page must stay where it was sent (or deeper) for a while.
async function go(page, hash) {
  const here = () => page.evaluate((h) => window.location.hash.startsWith(h), hash);
  for (let attempt = 0; attempt < 3; attempt += 1) {
    await page.evaluate((h) => {
      window.location.hash = h;
    }, hash);
    await page.waitForFunction((h) => window.location.hash.startsWith(h), { timeout: WAIT }, hash);
    await sleep(300);
    if (await here()) return;
  }
  throw new Error(`the app keeps leaving ${hash}`);
}

// Settings open from the user's own avatar, the lowest button of the left-hand bar (its label is
// an initial, or a picture once an avatar is set).
async function openSettings(page) {
  const handle = await page.waitForFunction(
    () => {
      const buttons = Array.from(document.querySelectorAll('button')).filter((b) => {
        const box = b.getBoundingClientRect();
        return b.offsetParent !== null && box.right <= 70 && box.width > 0;
      });
      buttons.sort((a, b) => b.getBoundingClientRect().top - a.getBoundingClientRect().top);
      return buttons[0] || null;
    },
    { timeout: WAIT },
  );
  await handle.asElement().evaluate((b) => b.click());
  await waitText(page, 'Logout');
}

function roomHash(kind, roomId) {
  return `#/${kind}/${encodeURIComponent(roomId)}`;
}

function roomOfUrl(url) {
  const last = url.split('#')[1].split('/').filter(Boolean).pop();
  return decodeURIComponent(last);
}

// The composer is a Slate editor; its first button (left of it) is "attach".
async function composer(page) {
  return page.waitForSelector('[data-editable-name=RoomInput]', { visible: true, timeout: WAIT });
}

async function send(page, text) {
  const editor = await composer(page);
  await editor.click();
  await page.keyboard.type(text);
  await page.keyboard.press('Enter');
}

// The user search of the invite and DM dialogs. The dialog takes the focus a moment after it
// opens; keys typed before that reach Cinny's page-wide shortcuts (which leave for the last
// room, closing the dialog), so type only once the field holds the focus, and check the field.
async function typeUserId(page, id) {
  const input = await page.waitForSelector(
    'xpath/.//label[normalize-space(.)="Name or userId"]/following::input[1]',
    { visible: true, timeout: WAIT },
  );
  await sleep(300);
  await input.click();
  await page.waitForFunction((field) => document.activeElement === field, { timeout: WAIT }, input);
  await input.type(id);
  const value = await input.evaluate((field) => field.value);
  check(value === id, `the user search field holds "${value}"`);
}

function api(name, method, apiPath, body) {
  return apiCall(HS, state.tokens[name], method, apiPath, body);
}

function screenshot(step, names) {
  return shoot(SHOTS, step, Object.fromEntries(names.map((name) => [name, state.pages[name]])));
}

// ---- the steps ------------------------------------------------------------------------------

const steps = {
  // Both users register through the form; the app then shows its home with the user signed in.
  async register() {
    const details = {};
    for (const name of USERS) {
      const page = state.pages[name];
      await page.goto(`${SITE}/#/register/`, { waitUntil: 'networkidle2' });
      await page.type('input[name=usernameInput]', name);
      await page.type('input[name=passwordInput]', password(name));
      await page.type('input[name=confirmPasswordInput]', password(name));
      await page.click('button[type=submit]');
      await page.waitForFunction(() => window.location.hash.startsWith('#/home'), { timeout: WAIT });
      await button(page, 'Create Room');
      const session = await page.evaluate(() => ({
        user: localStorage.getItem('cinny_user_id'),
        token: localStorage.getItem('cinny_access_token'),
      }));
      check(session.user === userId(name), `${name} is signed in as ${session.user}`);
      state.tokens[name] = session.token;
      const whoami = await api(name, 'GET', '/_matrix/client/v3/account/whoami');
      check(whoami.body.user_id === userId(name), `whoami for ${name}: ${JSON.stringify(whoami)}`);
      details[name] = session.user;
    }
    return details;
  },

  // Alice creates an unencrypted room (a server thumbnail exists only for unencrypted media),
  // invites Bob from the room; Bob accepts from his inbox; they exchange a message each.
  async room() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    await go(alice, '#/home/');
    await click(alice, 'Create Room');
    await alice.waitForSelector('input[name=name]', { visible: true, timeout: WAIT });
    await alice.click('button.toggle.toggle--active'); // end-to-end encryption: off
    await alice.type('input[name=name]', 'Lobby');
    await alice.type('textarea[name=topic]', 'Where the web client test meets');
    await click(alice, 'Create');
    await alice.waitForFunction(() => /#\/home\/!/.test(window.location.hash), { timeout: WAIT });
    const roomId = roomOfUrl(alice.url());
    state.rooms.lobby = roomId;
    await waitText(alice, 'alice changed room topic');

    await click(alice, 'Invite Member');
    await typeUserId(alice, userId('bob'));
    await click(alice, 'Search');
    await click(alice, 'Invite');
    await alice.waitForFunction(
      () => Array.from(document.querySelectorAll('span')).some((s) => s.innerText === 'Invited'),
      { timeout: WAIT },
    );
    await closeDialog(alice, 'Invite to Lobby');

    await go(bob, '#/inbox/invites/');
    await waitText(bob, 'Lobby');
    const invite = await bodyText(bob);
    check(invite.includes('Invited by alice'), `Bob's invite card: ${invite}`);
    await click(bob, 'Accept');
    await bob.waitForFunction(
      (room) => decodeURIComponent(window.location.hash).includes(room),
      { timeout: WAIT },
      roomId,
    );
    await composer(bob);

    await send(alice, 'Hello Bob, from Alice');
    await waitText(bob, 'Hello Bob, from Alice');
    await send(bob, 'Hello Alice, Bob here');
    await waitText(alice, 'Hello Alice, Bob here');
    return { room: roomId };
  },

  // Alice attaches a JPEG in the room and sends it; Bob's timeline shows the picture. Then
  // Alice makes the same picture her avatar; Bob's timeline shows it beside her messages as a
  // 48x48 "crop" thumbnail the server made.
  async image() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    const lobby = state.rooms.lobby;
    check(lobby, 'no room from the room step');
    await go(alice, roomHash('home', lobby));
    await go(bob, roomHash('home', lobby));
    await composer(alice);
    const attach = await alice.evaluateHandle(() => {
      let node = document.querySelector('[data-editable-name=RoomInput]');
      while (node && !node.querySelector('button')) node = node.parentElement;
      return node.querySelector('button');
    });
    const uploaded = alice.waitForResponse(
      (r) => r.url().includes('/upload') && r.request().method() !== 'OPTIONS',
      { timeout: WAIT },
    );
    const [chooser] = await Promise.all([alice.waitForFileChooser({ timeout: WAIT }), attach.click()]);
    await chooser.accept([IMAGE]);
    // (Chromium does not keep the body of this cross-origin POST for the inspector: the status
    // is what there is; the picture on Bob's side below proves the content.)
    const upload = await uploaded;
    check(upload.status() === 200, `upload answered ${upload.status()}`);
    await sleep(300); // the upload tray turns "ready" on the next render
    await (await composer(alice)).click();
    await alice.keyboard.press('Enter');

    const imageName = path.basename(IMAGE);
    const picture = await bob.waitForFunction(
      (alt) => {
        const img = Array.from(document.querySelectorAll('img')).find((i) => i.alt === alt);
        return img && img.complete && img.naturalWidth > 0 ? img : null;
      },
      { timeout: WAIT },
      imageName,
    );
    const pictureSize = await picture.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    check(pictureSize[0] === 640 && pictureSize[1] === 480, `Bob's picture is ${pictureSize}`);

    // The avatar: Settings -> the avatar button's hidden file input.
    await openSettings(alice);
    const fileInput = await alice.waitForSelector('.profile-editor input[type=file]', { timeout: WAIT });
    const avatarSet = alice.waitForResponse(
      (r) => r.url().includes('/avatar_url') && r.request().method() === 'PUT',
      { timeout: WAIT },
    );
    await fileInput.uploadFile(IMAGE);
    const avatarAnswer = await avatarSet;
    check(avatarAnswer.status() === 200, `PUT avatar_url answered ${avatarAnswer.status()}`);
    await closeDialog(alice, 'Settings');

    const thumbnail = await bob.waitForFunction(
      () => {
        const img = Array.from(document.querySelectorAll('img')).find(
          (i) => i.src.includes('/thumbnail/') && i.complete && i.naturalWidth > 0,
        );
        return img || null;
      },
      { timeout: WAIT },
    );
    const thumb = await thumbnail.evaluate((img) => ({
      src: img.src,
      width: img.naturalWidth,
      height: img.naturalHeight,
    }));
    // A crop thumbnail is square and far smaller than the 640x480 original.
    check(thumb.width === thumb.height && thumb.width <= 96, `thumbnail: ${JSON.stringify(thumb)}`);
    return { picture: pictureSize, thumbnail: thumb };
  },

  // Bob types without sending; Alice sees "bob is typing...".
  async typing() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    const lobby = state.rooms.lobby;
    check(lobby, 'no room from the room step');
    await go(alice, roomHash('home', lobby));
    await go(bob, roomHash('home', lobby));
    const editor = await composer(bob);
    await editor.click();
    await bob.keyboard.type('I am typing something long', { delay: 20 });
    await waitText(alice, 'bob is typing...');
    const shots = await screenshot('typing-seen', ['alice']);
    // Clearing the composer tells the server Bob stopped; Alice's notice goes away.
    for (let i = 0; i < 26; i += 1) await bob.keyboard.press('Backspace');
    await alice.waitForFunction(() => !document.body.innerText.includes('bob is typing...'), {
      timeout: WAIT,
    });
    return { screenshots: shots };
  },

  // Alice sets up cross-signing from Settings -> Security: secret storage, a new key backup,
  // then her cross-signing keys (with her password if the server asks for it). The dialog ends
  // on her new Security Key, and the Security tab then shows both set up.
  //
  // Cinny's crypto (matrix-js-sdk's legacy one) decides whether to put the new cross-signing
  // keys into secret storage by looking for the storage key in the account data its /sync has
  // delivered, a few requests after it wrote that key: on a busy machine its /sync has not
  // caught up yet, and it stores no secrets (a race in the client; a second "Setup" would
  // mend it). So the step holds the client's request that ends the secret-storage part (the
  // new key backup's POST) until its /sync has delivered the storage key: the race always goes
  // the way it does on a quiet machine, and a server whose /sync never delivers it fails here.
  async cross_signing() {
    const alice = state.pages.alice;
    await openSettings(alice);
    await click(alice, 'Security');
    let held = null;
    let result = null;
    const hold = async (request) => {
      if (request.isInterceptResolutionHandled()) return;
      if (request.method() === 'POST' && request.url().endsWith('/room_keys/version')) {
        const deadline = Date.now() + WAIT;
        while (!syncedIn('alice', 'm.secret_storage.default_key') && Date.now() < deadline) {
          await sleep(20);
        }
        held = syncedIn('alice', 'm.secret_storage.default_key');
      }
      await request.continue();
    };
    await alice.setRequestInterception(true);
    alice.on('request', hold);
    try {
      await click(alice, 'Setup');
      await click(alice, 'Generate Key');
      const outcome = await alice.waitForFunction(
        () => {
          const text = document.body.innerText;
          if (text.includes('Please save this security key somewhere safe.')) return 'key';
          if (text.includes('Failed to setup cross signing')) return 'failed';
          const password = document.querySelector('input[name=password]');
          if (password && password.offsetParent !== null) return 'password';
          return null;
        },
        { timeout: WAIT },
      );
      result = await outcome.jsonValue();
      if (result === 'password') {
        await alice.type('input[name=password]', password('alice'));
        await click(alice, 'Continue');
        const next = await alice.waitForFunction(
          () => {
            const text = document.body.innerText;
            if (text.includes('Please save this security key somewhere safe.')) return 'key';
            if (text.includes('Failed to setup cross signing')) return 'failed';
            if (text.includes('Wrong password') || text.includes('Request failed!')) return text;
            return null;
          },
          { timeout: WAIT },
        );
        result = await next.jsonValue();
      }
    } finally {
      alice.off('request', hold);
      await alice.setRequestInterception(false);
    }
    check(held !== null, 'the client created no key backup (no POST /room_keys/version)');
    check(
      held,
      `Alice's /sync did not deliver m.secret_storage.default_key: ${state.accountDataTrail.alice.join(' | ')}`,
    );
    check(result === 'key', `cross-signing setup ended with: ${result}`);
    const key = await alice.$eval('.cross-signing__key-text', (e) => e.innerText.trim());
    check(key.split(' ').length >= 12, `the Security Key shown: ${key}`);
    const shots = await screenshot('cross-signing-key', ['alice']);
    await closeDialog(alice, 'Security Key');
    // Back on the Security tab: cross-signing offers "Reset" (it is set up), and the backup
    // tile no longer asks for cross-signing first.
    // (The client stores the cross-signing secrets after it shows the key.)
    const reset = await button(alice, 'Reset', WAIT).catch(() => null);
    if (!reset) {
      await Promise.all(state.pending.splice(0));
      const stored = await api(
        'alice',
        'GET',
        `/_matrix/client/v3/user/${encodeURIComponent(userId('alice'))}/account_data/m.cross_signing.master`,
      );
      const synced = [...state.syncedAccountData.alice.keys()].sort().join(', ');
      throw new Error(
        `the Security tab still offers "Setup"; the server holds m.cross_signing.master: ` +
          `${stored.status}; Alice's /sync delivered account data: ${synced}; ` +
          `her account data, in order: ${state.accountDataTrail.alice.join(' | ')}`,
      );
    }
    // The backup tile reads the backup's state on its own (it may still show what it read
    // before the setup): wait for it to show the backup, with no offer to create one.
    const backupShown = await alice
      .waitForFunction(
        () => {
          const text = document.body.innerText;
          return (
            text.includes('Encrypted messages backup') &&
            !text.includes('Setup cross signing to backup your encrypted messages.') &&
            !text.includes('Create Backup')
          );
        },
        { timeout: WAIT },
      )
      .then(() => true)
      .catch(() => false);
    check(backupShown, `the backup tile does not show the backup: ${await bodyText(alice)}`);
    shots.push(...(await screenshot('cross-signing-done', ['alice'])));

    const backup = await api('alice', 'GET', '/_matrix/client/v3/room_keys/version');
    check(backup.status === 200 && backup.body.version, `room_keys/version: ${JSON.stringify(backup)}`);
    const keys = await api('alice', 'POST', '/_matrix/client/v3/keys/query', {
      device_keys: { [userId('alice')]: [] },
    });
    check(
      keys.body.master_keys && keys.body.master_keys[userId('alice')],
      `no master key in keys/query: ${JSON.stringify(keys.body)}`,
    );
    check(
      keys.body.self_signing_keys && keys.body.self_signing_keys[userId('alice')],
      'no self-signing key in keys/query',
    );
    await closeDialog(alice, 'Settings');
    return { backup_version: backup.body.version, algorithm: backup.body.algorithm, screenshots: shots };
  },

  // Alice starts a DM with Bob (Cinny makes it encrypted). Bob's invitation names Alice — the
  // room has no name, so that comes only from her membership in the invite's stripped state —
  // then Bob accepts and reads her message, which the server only ever saw encrypted.
  async encrypted_dm() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    // Now and then Cinny goes back to the last room of Home a moment after the Direct page
    // opens, which closes the dialog before "Message" does anything (a client-side route
    // quirk, no request involved; the trail of routes shows it): then Alice starts again, as
    // a person would. steps.json records how many attempts it took.
    let roomId = null;
    const onDirect = () => alice.evaluate(() => window.location.hash.startsWith('#/direct/'));
    for (let attempt = 1; attempt <= 5 && !roomId; attempt += 1) {
      await go(alice, '#/direct/');
      // The jump back to Home comes up to a second after the Direct page opened: wait that out
      // (and start again if it came) before opening the dialog it would close.
      await sleep(1500);
      if (!(await onDirect())) continue;
      const createdBefore = state.createRooms.alice;
      await click(alice, 'Direct Message');
      await typeUserId(alice, userId('bob'));
      await click(alice, 'Search');
      const offer = await alice.waitForFunction(
        () =>
          Array.from(document.querySelectorAll('[role=dialog] button'))
            .map((b) => b.innerText.trim())
            .find((text) => text === 'Message' || text === 'Open') || null,
        { timeout: WAIT },
      );
      await click(alice, await offer.jsonValue());
      // Cinny records the new DM in Alice's m.direct; that names the room whichever way the
      // dialog goes on (it may offer "Open" or close by itself).
      // (Its write is background work of the client: on a busy machine it can take a while.)
      const deadline = Date.now() + WAIT;
      while (!roomId && Date.now() < deadline) {
        // Sent back to Home before the DM existed: the dialog is gone, so start again.
        if (!(await onDirect()) && state.createRooms.alice === createdBefore) break;
        const direct = await api(
          'alice',
          'GET',
          `/_matrix/client/v3/user/${encodeURIComponent(userId('alice'))}/account_data/m.direct`,
        );
        roomId = direct.status === 200 ? (direct.body[userId('bob')] || [])[0] : null;
        if (!roomId) await sleep(250);
      }
      state.dmAttempts = attempt;
    }
    check(
      roomId,
      `Alice's m.direct never named a DM with Bob; her rooms and account data, in order: ` +
        state.accountDataTrail.alice.join(' | '),
    );
    state.rooms.dm = roomId;
    const open = await button(alice, 'Open', 2000).catch(() => null);
    if (open) await open.evaluate((b) => b.click());
    check(
      !(await alice.$$eval('[role=dialog] h2', (hs) => hs.some((h) => h.innerText.trim() === 'Direct message'))),
      'the Direct message dialog is still open',
    );
    await go(alice, roomHash('direct', roomId));

    await go(bob, '#/inbox/invites/');
    await waitText(bob, 'Direct Messages');
    await button(bob, 'Accept');
    const card = await bodyText(bob);
    const shots = await screenshot('dm-invite', ['bob']);
    // Judged at the end, so the rest of the DM is exercised either way.
    const namesAlice = !card.includes('Empty room') && /Invited by alice[\s\S]*\nalice\n/.test(card);
    await click(bob, 'Accept');
    await sleep(500);
    await go(bob, roomHash('direct', roomId));
    await composer(bob);

    await send(alice, 'A secret for Bob');
    await waitText(bob, 'A secret for Bob');
    const encryption = await api(
      'bob',
      'GET',
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/state/m.room.encryption/`,
    );
    check(encryption.status === 200, `m.room.encryption: ${JSON.stringify(encryption)}`);
    const messages = await api(
      'bob',
      'GET',
      `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages?dir=b&limit=20`,
    );
    const seen = JSON.stringify(messages.body);
    check(!seen.includes('A secret for Bob'), 'the server holds the DM message in clear text');
    check(seen.includes('m.room.encrypted'), 'no m.room.encrypted event in the DM');
    const invitation = card.slice(card.indexOf('Direct Messages')).replace(/\s+/g, ' ');
    check(
      namesAlice,
      `the DM works, but Bob's invitation does not name alice (stripped state without the ` +
        `inviter's membership?): "${invitation}"`,
    );
    return { room: roomId, attempts: state.dmAttempts, screenshots: shots };
  },

  // Alice upgrades the room through the API (Cinny has no /upgraderoom); Bob's page shows the
  // room was replaced, he follows it to the new room, and his message there reaches Alice.
  async upgrade() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    const lobby = state.rooms.lobby;
    check(lobby, 'no room from the room step');
    await go(alice, roomHash('home', lobby));
    await go(bob, roomHash('home', lobby));
    await composer(bob);
    const capabilities = await api('alice', 'GET', '/_matrix/client/v3/capabilities');
    const version = capabilities.body.capabilities['m.room_versions'].default;
    const upgraded = await api(
      'alice',
      'POST',
      `/_matrix/client/v3/rooms/${encodeURIComponent(lobby)}/upgrade`,
      { new_version: version },
    );
    check(upgraded.status === 200, `upgrade answered ${JSON.stringify(upgraded)}`);
    const newRoom = upgraded.body.replacement_room;
    await waitText(bob, 'This room has been replaced');
    const shots = await screenshot('upgrade-replaced', ['bob']);
    // "Join New Room" joins (when the server has not already joined Bob to the replacement)
    // and turns into "Open New Room", which goes there.
    const offered = await bob.waitForFunction(
      () =>
        Array.from(document.querySelectorAll('button'))
          .map((b) => b.offsetParent !== null && b.innerText.trim())
          .find((text) => text === 'Open New Room' || text === 'Join New Room') || null,
      { timeout: WAIT },
    );
    const firstOffer = await offered.jsonValue();
    if (firstOffer === 'Join New Room') await click(bob, 'Join New Room');
    await click(bob, 'Open New Room');
    await bob.waitForFunction(
      (room) => decodeURIComponent(window.location.hash).includes(room),
      { timeout: WAIT },
      newRoom,
    );
    await composer(bob);
    await go(alice, roomHash('home', newRoom));
    await send(bob, 'Following the upgrade');
    await waitText(alice, 'Following the upgrade');
    return { old_room: lobby, new_room: newRoom, version, offered: firstOffer, screenshots: shots };
  },
};

// A failed step may leave dialogs open or a page half-way; the next one starts from a fresh
// load of the app (same session, same stores), so one failure does not cascade.
async function reset() {
  for (const name of USERS) {
    const page = state.pages[name];
    if (!page.url().startsWith(SITE)) continue;
    await page.reload({ waitUntil: 'networkidle2' }).catch(() => {});
    await page
      .waitForFunction(() => document.querySelectorAll('nav button, button').length > 5, {
        timeout: WAIT,
      })
      .catch(() => {});
  }
}

// ---- main loop ------------------------------------------------------------------------------

async function main() {
  ensureDir(SHOTS);
  const browser = await launch(CHROMIUM);
  for (const name of USERS) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    // Cinny saves the Security Key as a download; nothing to keep.
    const cdp = await page.createCDPSession();
    await cdp.send('Browser.setDownloadBehavior', {
      behavior: 'deny',
      browserContextId: context.id,
    }).catch(() => {});
    watch(name, page);
    state.pages[name] = page;
  }
  await serveSteps({
    browser,
    recorder,
    steps,
    // The app's start-up calls after a reset's reload belong to no step (the register step
    // judges the same calls); they are passed on for the record only.
    reset,
    shots: (step) => screenshot(step, USERS),
    trail: () => USERS.map((name) => `${name} went: ${state.nav[name].join(' -> ')}`),
  });
  await browser.close();
}

runDriver(main);
