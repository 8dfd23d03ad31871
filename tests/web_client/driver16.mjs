// Drives the built Cinny in headless Chromium for tests/web_client/test_cinny_issue16.py (issue
// 16: search, user directory, a space's room list, threads, unread badges).
//
// The protocol, the browser and the record of what it reports are harness.mjs's (as for
// driver.mjs); the Python side judges the events with test_cinny.py's rules.
//
// The accounts and the rooms each scenario starts from are made through the API (the register
// and create-room forms are issue 15's scenarios); each page is then signed in the way Cinny
// keeps a session (its four localStorage keys), and everything the scenario is about happens
// in the page.

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

// Pages for alice and bob; carol and dave exist for the directory (API only).
const USERS = ['alice', 'bob'];
const ACCOUNTS = ['alice', 'bob', 'carol', 'dave'];
const userId = (name) => `@${name}:${SERVER_NAME}`;

const state = { pages: {}, sessions: {}, rooms: {}, txn: 0 };
const recorder = new Recorder(HS);

// ---- the API, for what the scenarios start from -------------------------------------------

function api(name, method, apiPath, body) {
  return apiCall(HS, name ? state.sessions[name].access_token : null, method, apiPath, body);
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

function screenshot(step, names) {
  return shoot(SHOTS, step, Object.fromEntries(names.map((name) => [name, state.pages[name]])));
}

// Type into a field only once it holds the focus (a dialog takes the focus a moment after it
// opens; keys typed before reach Cinny's page-wide shortcuts), and check what it holds.
async function typeFocused(page, selector, text) {
  const input = await page.waitForSelector(selector, { visible: true, timeout: WAIT });
  await sleep(300);
  await input.click();
  await page.waitForFunction((field) => document.activeElement === field, { timeout: WAIT }, input);
  await input.type(text);
  const value = await input.evaluate((field) => field.value);
  check(value === text, `the field holds "${value}", not "${text}"`);
}

// Scroll the last message holding ``text`` into view, for the screenshot.
async function showMessage(page, text) {
  await page.evaluate((wanted) => {
    const items = Array.from(document.querySelectorAll('[data-message-id]')).filter((e) =>
      e.innerText.includes(wanted),
    );
    if (items.length) items[items.length - 1].scrollIntoView({ block: 'center' });
  }, text);
}

// A room's unread_notifications in a fresh /sync, read again for a while until they are the
// wanted ones (the page's read receipt may still be on its way); the last ones read.
async function serverCounts(name, roomId, wanted) {
  const filter = JSON.stringify({ room: { rooms: [roomId], timeline: { limit: 1 } } });
  let counts = null;
  for (let i = 0; i < 30; i += 1) {
    const sync = await ok(name, 'GET', `/_matrix/client/v3/sync?filter=${encodeURIComponent(filter)}`);
    counts = sync.rooms.join[roomId].unread_notifications;
    if (counts.notification_count === wanted[0] && counts.highlight_count === wanted[1]) break;
    await sleep(100);
  }
  return counts;
}

// window.t16Badge(name): the number beside a room's name in the room list (its unread
// badge), or null when it has none.
async function installBadgeReader(page) {
  await page.evaluate(() => {
    window.t16Badge = (name) => {
      for (const item of document.querySelectorAll('a, [role=button], li, div')) {
        const m = (item.innerText || '').trim().match(/^(.+?)\s+(\d+)$/);
        if (m && m[1] === name) return m[2];
      }
      return null;
    };
  });
}

// Sign the page in as Cinny keeps a session: the four keys are written from a static file of
// the same origin (not the app, which would start and be cut short), then the app loads once.
async function signIn(name) {
  const page = state.pages[name];
  const session = state.sessions[name];
  await page.goto(`${SITE}/config.json`, { waitUntil: 'domcontentloaded' });
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
    await typeFocused(alice, 'input[name=searchInput]', 'heron');
    await alice.keyboard.press('Enter');
    await waitText(alice, 'landed by the pond this morning');
    const text = await alice.evaluate(() => document.body.innerText);
    check(text.includes('Garden Talk'), 'the search result does not name its room');
    check(!text.includes('The tulips are late'), 'a message without the word is a result');
    return {};
  },

  // alice opens the invite dialog of a new room and searches part of a name: the directory
  // finds bob (they share a room) and carol (she is in a public room), not dave (neither).
  async directory() {
    const alice = state.pages.alice;
    state.rooms.picnic = await createRoom('alice', { name: 'Picnic' });
    await go(alice, roomHash('home', state.rooms.picnic));
    await composer(alice);
    const results = {};
    for (const [term, wanted] of [
      ['bo', userId('bob')],
      ['caro', userId('carol')],
      ['dave', 'No matches found for "dave"!'],
    ]) {
      await click(alice, 'Invite Member');
      await typeFocused(
        alice,
        'xpath/.//label[normalize-space(.)="Name or userId"]/following::input[1]',
        term,
      );
      await click(alice, 'Search');
      await waitText(alice, wanted);
      results[term] = wanted;
      await screenshot(`directory-${term}`, ['alice']);
      await closeDialog(alice, 'Invite to Picnic');
    }
    return results;
  },

  // alice makes a space "Park" holding Pond (public, bob is not in it) and Shed (invite-only,
  // bob is not in it); bob joins the space and opens its lobby, where Cinny previews each child
  // it does not know through /hierarchy of that room (limit 1, depth 1): Pond is offered to
  // join, Shed is refused by the server and stays an unnamed private room; bob joins Pond there.
  //
  // These rooms are version 11: Cinny 4.2.2 takes a room ID for one only with a ":server" part
  // (its /^([@!$+#])(\S+):(\S+)$/), which room version 12's IDs no longer have, and drops such
  // space children unseen (the server's default version is 12, as Synapse's).
  async space() {
    const bob = state.pages.bob;
    const v11 = (options) => createRoom('alice', { room_version: '11', ...options });
    const space = await v11({
      name: 'Park',
      creation_content: { type: 'm.space' },
      invite: [userId('bob')],
    });
    state.rooms.space = space;
    const pond = await v11({ name: 'Pond', preset: 'public_chat' });
    const shed = await v11({ name: 'Shed' });
    state.rooms.pond = pond;
    for (const child of [pond, shed]) {
      await ok('alice', 'PUT', `${room(space)}/state/m.space.child/${encodeURIComponent(child)}`, {
        via: [SERVER_NAME],
      });
    }
    await join('bob', space);
    await go(bob, `#/${encodeURIComponent(space)}/lobby/`);
    await waitText(bob, 'Pond');
    await waitText(bob, 'Private Room');
    const lobby = await bob.evaluate(() => document.body.innerText);
    check(!lobby.includes('Shed'), 'the lobby shows an invite-only room bob is not in');
    const shots = await screenshot('space-lobby', ['bob']);
    // Pond's card has the only Join button.
    await click(bob, 'Join');
    let joined = false;
    for (let i = 0; i < 50 && !joined; i += 1) {
      const rooms = await ok('bob', 'GET', '/_matrix/client/v3/joined_rooms');
      joined = rooms.joined_rooms.includes(pond);
      if (!joined) await sleep(100);
    }
    check(joined, 'bob did not join Pond from the lobby');
    return { space, screenshots: shots };
  },

  // bob (as a Synapse-era client such as Element does) replies to alice's message in a thread;
  // Cinny shows it as a threaded reply; alice replies to it from the page, which Cinny keeps in
  // the thread, then edits it. The server aggregates both replies under the root and the edit
  // with the reply.
  async thread() {
    const alice = state.pages.alice;
    const bob = state.pages.bob;
    const talk = state.rooms.talk;
    await go(alice, roomHash('home', talk));
    await go(bob, roomHash('home', talk));
    await send(alice, 'Shall we plant tulips or roses?');
    let root = null;
    for (let i = 0; i < 50 && !root; i += 1) {
      const page = await ok('bob', 'GET', `${room(talk)}/messages?dir=b&limit=5`);
      const found = page.chunk.find((e) => e.content && e.content.body === 'Shall we plant tulips or roses?');
      if (found) root = found.event_id;
      else await sleep(100);
    }
    check(root, 'alice\'s message never reached the server');
    const bobReply = await sendApi('bob', talk, {
      msgtype: 'm.text',
      body: 'Roses, surely',
      'm.relates_to': {
        rel_type: 'm.thread',
        event_id: root,
        is_falling_back: true,
        'm.in_reply_to': { event_id: root },
      },
    });
    await waitText(alice, 'Roses, surely');
    await waitText(alice, 'Threaded reply');
    // Hovering a message shows its options; the reply arrow carries the event's id.
    const item = await alice.waitForSelector(`[data-message-id="${bobReply}"]`, { timeout: WAIT });
    await item.hover();
    const replyButton = await alice.waitForSelector(
      `[data-message-id="${bobReply}"] button[data-event-id="${bobReply}"]`,
      { timeout: WAIT },
    );
    await replyButton.evaluate((b) => b.click());
    await send(alice, 'Roses it is, then');
    await waitText(bob, 'Roses it is, then');
    await showMessage(alice, 'Roses it is, then');
    await showMessage(bob, 'Roses it is, then');
    const shots = await screenshot('thread-replied', ['alice', 'bob']);

    const relations = await ok('bob', 'GET', `/_matrix/client/v1/rooms/${encodeURIComponent(talk)}/relations/${encodeURIComponent(root)}/m.thread`);
    // (Cinny puts the quoted reply fallback before its text in the body.)
    const mine = (e) => e.sender === userId('alice') && e.content.body.endsWith('Roses it is, then');
    const bodies = relations.chunk.map((e) => e.content.body);
    check(
      relations.chunk.length === 2 && bodies.includes('Roses, surely') && relations.chunk.some(mine),
      `thread relations: ${JSON.stringify(bodies)}`,
    );
    const aliceReply = relations.chunk.find(mine);
    const relatesTo = aliceReply.content['m.relates_to'];
    check(
      relatesTo.rel_type === 'm.thread' && relatesTo.event_id === root,
      `alice's reply is not in the thread: ${JSON.stringify(relatesTo)}`,
    );
    const rootEvent = await ok('alice', 'GET', `${room(talk)}/event/${encodeURIComponent(root)}`);
    const summary = rootEvent.unsigned && rootEvent.unsigned['m.relations'] && rootEvent.unsigned['m.relations']['m.thread'];
    check(
      summary && summary.count === 2 && summary.current_user_participated === true &&
        summary.latest_event.event_id === aliceReply.event_id,
      `the root's thread summary: ${JSON.stringify(rootEvent.unsigned)}`,
    );
    const threads = await ok('bob', 'GET', `/_matrix/client/v1/rooms/${encodeURIComponent(talk)}/threads`);
    check(threads.chunk.length > 0 && threads.chunk[0].event_id === root, `threads: ${JSON.stringify(threads)}`);

    // alice edits her reply from the page (the pencil beside the reply arrow); bob's page shows
    // the new text marked edited, and the server bundles the edit with the reply.
    // (Her page may still know it by its local echo's ID: the item is found by its text.)
    const mineId = aliceReply.event_id;
    const itemId = await (
      await alice.waitForFunction(
        () => {
          const items = Array.from(document.querySelectorAll('[data-message-id]')).filter((e) =>
            e.innerText.includes('Roses it is, then'),
          );
          return items.length ? items[items.length - 1].getAttribute('data-message-id') : null;
        },
        { timeout: WAIT },
      )
    ).jsonValue();
    await (await alice.$(`[data-message-id="${itemId}"]`)).hover();
    const arrow = await alice.waitForSelector(
      [itemId, mineId].map((id) => `[data-message-id="${itemId}"] button[data-event-id="${id}"]`).join(', '),
      { timeout: WAIT },
    );
    const pencil = await arrow.evaluateHandle((b) => b.nextElementSibling);
    check(
      await pencil.evaluate((b) => b instanceof HTMLButtonElement),
      'no edit button beside the reply arrow of alice\'s message',
    );
    await pencil.evaluate((b) => b.click());
    const editor = await alice.waitForSelector(
      '[data-message-id] [contenteditable=true]:not([data-editable-name=RoomInput])',
      { visible: true, timeout: WAIT },
    );
    await editor.click();
    await alice.waitForFunction((field) => field.contains(document.activeElement), { timeout: WAIT }, editor);
    await alice.keyboard.down('Control');
    await alice.keyboard.press('KeyA');
    await alice.keyboard.up('Control');
    await alice.keyboard.type('Red roses it is, then');
    await alice.keyboard.press('Enter');
    await waitText(bob, 'Red roses it is, then');
    await waitText(bob, '(edited)');
    await showMessage(bob, 'Red roses it is, then');
    shots.push(...(await screenshot('thread-edited', ['bob'])));
    let replace = null;
    for (let i = 0; i < 30 && !replace; i += 1) {
      const edited = await ok('bob', 'GET', `${room(talk)}/event/${encodeURIComponent(mineId)}`);
      replace = edited.unsigned && edited.unsigned['m.relations'] && edited.unsigned['m.relations']['m.replace'];
      if (!replace) await sleep(100);
    }
    check(replace && replace.event_id && replace.event_id !== mineId, `no m.replace bundled: ${JSON.stringify(replace)}`);
    return { count: summary.count, edited: true, screenshots: shots };
  },

  // bob is elsewhere while alice writes twice in "Notice Board", once naming him: bob's room
  // list shows the room's badge with the server's count, his inbox lists the mention (GET
  // /notifications), and opening the room clears the badge and the server's count.
  async unread() {
    const bob = state.pages.bob;
    const board = await createRoom('alice', { name: 'Notice Board', invite: [userId('bob')] });
    state.rooms.board = board;
    await join('bob', board);
    await go(bob, '#/home/');
    await waitText(bob, 'Notice Board');
    await sendApi('alice', board, { msgtype: 'm.text', body: 'The board is up' });
    await sendApi('alice', board, { msgtype: 'm.text', body: 'bob, your plot is number 7' });
    await installBadgeReader(bob);
    // The count grows as the server evaluates each message: wait for both, then judge.
    await bob
      .waitForFunction(() => window.t16Badge('Notice Board') === '2', { timeout: WAIT })
      .catch(() => {});
    const count = await bob.evaluate(() => window.t16Badge('Notice Board'));
    const shots = await screenshot('unread-badge', ['bob']);
    check(count === '2', `the badge says ${count}`);
    const before = await serverCounts('bob', board, [2, 1]);
    check(
      before.notification_count === 2 && before.highlight_count === 1,
      `the server's counts: ${JSON.stringify(before)} (the second message names bob)`,
    );

    await go(bob, '#/inbox/notifications/');
    await waitText(bob, 'your plot is number 7');
    shots.push(...(await screenshot('unread-inbox', ['bob'])));

    await go(bob, roomHash('home', board));
    await waitText(bob, 'your plot is number 7');
    await go(bob, '#/home/');
    await waitText(bob, 'Notice Board');
    await installBadgeReader(bob);
    await bob.waitForFunction(() => window.t16Badge('Notice Board') === null, { timeout: WAIT });
    shots.push(...(await screenshot('unread-cleared', ['bob'])));
    const after = await serverCounts('bob', board, [0, 0]);
    check(
      after.notification_count === 0 && after.highlight_count === 0,
      `the server's counts after reading: ${JSON.stringify(after)}`,
    );
    return { badge: count, screenshots: shots };
  },
};

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
  ensureDir(SHOTS);
  const browser = await launch(CHROMIUM);
  for (const name of USERS) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    recorder.watch(name, page);
    state.pages[name] = page;
  }
  await serveSteps({
    browser,
    recorder,
    steps,
    reset,
    shots: (step) => screenshot(step, USERS),
  });
  await browser.close();
  await wakeSyncs().catch(() => {});
}

runDriver(main);
