// Unit tests of wxgate.js against a fake `wx` and an in-process fake gateway.
//
// Concurrency is real: every fake answer arrives on a later timer tick, so
// requests started together are all in flight together. Where a test needs a
// precise interleaving it holds one answer back with a promise it releases.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient, TOKEN_CLOSE_CODE, WxGateError } from '../wxgate.js';

const BASE = 'https://gw.test';

// ---------------------------------------------------------------------------
// Fake gateway: /wx/login, /wx/refresh, /wx/logout, /wx/phone and protected paths.

function fakeGateway() {
  let serial = 0;
  const gw = {
    calls: [], // every request, in the order sent: { path, method, header, data }
    tokens: new Map(), // access token -> { openid, state: 'ok' | 'expired' | 'revoked' }
    refreshTokens: new Map(), // refresh token -> { openid, used }
    expiresIn: 7200,
    networkDown: false,
    rejectAlways: null, // a token error code every protected path answers with
    hold: () => null, // (call) => a promise to wait for before answering it
    override: () => null, // (call) => an answer that replaces the usual one

    count(path, method = 'POST') {
      return gw.calls.filter((c) => c.path === path && (method === '*' || c.method === method)).length;
    },
    callsTo(path) {
      return gw.calls.filter((c) => c.path === path);
    },
    expireAll() {
      for (const t of gw.tokens.values()) t.state = 'expired';
    },
    burnRefreshTokens() {
      for (const r of gw.refreshTokens.values()) r.used = true;
    },

    serve(options) {
      const call = {
        // A client may be given a base URL with a path: the gateway is mounted under /base.
        path: new URL(options.url).pathname.replace(/^\/base(?=\/)/, ''),
        method: options.method || 'GET',
        header: options.header || {},
        data: options.data,
      };
      gw.calls.push(call);
      // A retry loop in the client fails the test instead of running forever.
      if (gw.calls.length > 500) {
        setTimeout(() => options.fail({ errMsg: 'request:fail runaway client' }), 0);
        return;
      }
      Promise.resolve(gw.hold(call))
        .then(nextTick)
        .then(() => {
          if (gw.networkDown) options.fail({ errMsg: 'request:fail timeout' });
          else options.success(withHeader(encoded(gw.override(call) || gw.answer(call), options)));
        });
    },

    answer(call) {
      if (call.path === '/wx/login') return gw.login(call);
      if (call.path === '/wx/refresh') return gw.refresh(call);
      const who = gw.authenticate(call);
      if (who.error) return reply(401, who);
      if (call.path === '/wx/logout') return gw.logout(call, who);
      if (call.path === '/wx/phone') return gw.phone(call);
      if (call.path === '/api/forbidden') return reply(403, { error: 'forbidden', message: 'no' });
      if (call.path === '/api/not-member') return reply(401, { error: 'not_member', message: 'backend says no' });
      if (call.path === '/api/broken') return reply(500, 'upstream exploded');
      return reply(200, { path: call.path, openid: who.openid });
    },

    login(call) {
      if (!call.data || !call.data.code) return reply(400, { error: 'invalid_request', message: 'code' });
      if (call.data.code === 'bad-code') return reply(401, { error: 'invalid_code', message: 'code rejected' });
      return reply(200, gw.grant(`openid-${call.data.code}`));
    },

    refresh(call) {
      const entry = gw.refreshTokens.get(call.data && call.data.refresh_token);
      if (!entry) return reply(401, { error: 'refresh_token_invalid', message: 'unknown' });
      if (entry.used) return reply(401, { error: 'refresh_token_reused', message: 'reused' });
      entry.used = true;
      return reply(200, gw.grant(entry.openid));
    },

    logout(call, who) {
      const all = Boolean(call.data && call.data.all);
      for (const t of gw.tokens.values()) {
        if (all ? t.openid === who.openid : t === who) t.state = 'revoked';
      }
      return reply(200, { revoked: all ? 'all' : 'token' });
    },

    phone(call) {
      if (call.data && call.data.code === 'phone-ok') {
        return reply(200, { phoneNumber: '+86 13800000000', purePhoneNumber: '13800000000', countryCode: '86' });
      }
      return reply(400, { error: 'invalid_phone_code', message: 'bad phone code' });
    },

    authenticate(call) {
      if (gw.rejectAlways) return { error: gw.rejectAlways, message: 'scripted' };
      const auth = call.header.Authorization;
      if (!auth) return { error: 'token_missing', message: 'no token' };
      const t = gw.tokens.get(auth.replace(/^Bearer /, ''));
      if (!t) return { error: 'token_invalid', message: 'unknown token' };
      if (t.state === 'expired') return { error: 'token_expired', message: 'expired' };
      if (t.state === 'revoked') return { error: 'token_revoked', message: 'revoked' };
      return t;
    },

    grant(openid) {
      serial += 1;
      const token = `access-${serial}`;
      const refreshToken = `refresh-${serial}`;
      gw.tokens.set(token, { openid, state: 'ok' });
      gw.refreshTokens.set(refreshToken, { openid, used: false });
      return {
        token,
        token_type: 'Bearer',
        expires_in: gw.expiresIn,
        refresh_token: refreshToken,
        openid,
        unionid: null,
      };
    },
  };
  return gw;
}

function reply(statusCode, data) {
  return { statusCode, data };
}

/** The body as wx.request gives it for `responseType: 'arraybuffer'`. */
function encoded(res, options) {
  if (options.responseType !== 'arraybuffer') return res;
  const text = typeof res.data === 'string' ? res.data : JSON.stringify(res.data);
  return { ...res, data: new TextEncoder().encode(text).buffer };
}

function withHeader(res) {
  const type = typeof res.data === 'string' ? 'text/plain' : 'application/json';
  return { ...res, header: { 'Content-Type': type } };
}

function nextTick() {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

// ---------------------------------------------------------------------------
// Fake wx: in-memory storage, a scripted wx.login, wx.request on the gateway.

function fakeWx(gw) {
  const storage = new Map();
  const wx = {
    storage,
    loginCalls: 0,
    loginFails: false,
    sockets: [],
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => {
      storage.set(key, value);
    },
    removeStorageSync: (key) => {
      storage.delete(key);
    },
    login({ success, fail }) {
      wx.loginCalls += 1;
      const n = wx.loginCalls;
      setTimeout(() => (wx.loginFails ? fail({ errMsg: 'login:fail mocked' }) : success({ code: `code-${n}` })), 0);
    },
    request: (options) => gw.serve(options),
    connectSocket(options) {
      const task = { options, onClose() {} };
      wx.sockets.push(task);
      return task;
    },
  };
  return wx;
}

function setup(options = {}) {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  const client = createClient({ baseURL: BASE, wx, ...options });
  return { gw, wx, client };
}

function deferred() {
  let resolve;
  const promise = new Promise((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const bearerOf = (call) => call.header.Authorization;

// ---------------------------------------------------------------------------
// Login

test('login stores the token pair and its expiry', async () => {
  const { wx, client } = setup();
  const before = Date.now();
  const answer = await client.login();

  assert.equal(answer.token, 'access-1');
  assert.equal(answer.openid, 'openid-code-1');
  assert.equal(client.token(), 'access-1');
  assert.equal(wx.storage.get('wxgate.token'), 'access-1');
  assert.equal(wx.storage.get('wxgate.refresh_token'), 'refresh-1');
  const expiresAt = wx.storage.get('wxgate.expires_at');
  assert.ok(expiresAt >= before + 7200 * 1000 && expiresAt <= Date.now() + 7200 * 1000);
});

test('login sends the code, and the appid when the client has one', async () => {
  const { gw, client } = setup({ appid: 'wx123' });
  await client.login();
  const [call] = gw.callsTo('/wx/login');
  assert.deepEqual(call.data, { code: 'code-1', appid: 'wx123' });
  assert.equal(call.header['content-type'], 'application/json');

  const plain = setup();
  await plain.client.login();
  assert.deepEqual(plain.gw.callsTo('/wx/login')[0].data, { code: 'code-1' });
});

test('5 concurrent login()/request() callers share one login', async () => {
  const { gw, wx, client } = setup();
  const answers = await Promise.all([
    client.login(),
    client.request({ url: '/api/a' }),
    client.login(),
    client.request({ url: '/api/b' }),
    client.login(),
  ]);

  assert.equal(wx.loginCalls, 1);
  assert.equal(gw.count('/wx/login'), 1);
  assert.equal(answers[0], answers[2]);
  assert.equal(answers[0], answers[4]);
  assert.equal(answers[1].statusCode, 200);
  assert.equal(answers[3].statusCode, 200);
  assert.equal(bearerOf(gw.callsTo('/api/a')[0]), 'Bearer access-1');

  // Once settled, a new login() is a new login.
  await client.login();
  assert.equal(wx.loginCalls, 2);
});

test('wx.login failure rejects with wx_login_failed', async () => {
  const { gw, wx, client } = setup();
  wx.loginFails = true;
  await assert.rejects(client.login(), (err) => {
    assert.ok(err instanceof WxGateError);
    assert.equal(err.error, 'wx_login_failed');
    assert.equal(err.message, 'login:fail mocked');
    assert.equal(err.statusCode, 0);
    return true;
  });
  assert.equal(gw.calls.length, 0);
  assert.equal(client.token(), null);
});

test('a gateway refusal of the login rejects with its code and status', async () => {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  wx.login = ({ success }) => setTimeout(() => success({ code: 'bad-code' }), 0);
  const client = createClient({ baseURL: BASE, wx });

  await assert.rejects(client.login(), { error: 'invalid_code', message: 'code rejected', statusCode: 401 });
  await assert.rejects(client.request({ url: '/api/a' }), { error: 'invalid_code' });
  assert.equal(gw.count('/api/a', '*'), 0);
  assert.equal(wx.storage.size, 0);
});

// ---------------------------------------------------------------------------
// Requests

test('every request carries the Bearer token, the caller headers and the joined URL', async () => {
  const { gw, client } = setup();
  await client.request({ url: '/api/one' });
  await client.request({ url: 'api/two', method: 'POST', data: { x: 1 }, header: { 'x-trace': 't1' } });
  await client.request({ url: '/api/three', header: { authorization: 'Bearer forged' } });

  const protectedCalls = gw.calls.filter((c) => c.path.startsWith('/api/'));
  assert.deepEqual(protectedCalls.map((c) => c.path), ['/api/one', '/api/two', '/api/three']);
  for (const call of protectedCalls) assert.equal(bearerOf(call), 'Bearer access-1');
  assert.equal(protectedCalls[1].header['x-trace'], 't1');
  assert.equal(protectedCalls[1].method, 'POST');
  assert.deepEqual(protectedCalls[1].data, { x: 1 });
  assert.equal(protectedCalls[2].header.authorization, undefined);
});

test('an absolute URL is used as is; the base URL trailing slash is ignored', async () => {
  const urls = [];
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  const serve = wx.request;
  wx.request = (options) => {
    urls.push(options.url);
    serve({ ...options, url: options.url.replace('https://other.test', BASE) });
  };
  const client = createClient({ baseURL: `${BASE}/`, wx });
  await client.request({ url: '/api/a' });
  await client.request({ url: 'https://other.test/api/b' });
  assert.deepEqual(urls, [`${BASE}/wx/login`, `${BASE}/api/a`, 'https://other.test/api/b']);
});

test('the answer resolves like wx.request: statusCode, data, header', async () => {
  const { client } = setup();
  const res = await client.request({ url: '/api/a' });
  assert.deepEqual(res, {
    statusCode: 200,
    data: { path: '/api/a', openid: 'openid-code-1' },
    header: { 'Content-Type': 'application/json' },
  });
});

test('20 concurrent requests with an expired token share exactly one refresh', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();

  const answers = await Promise.all(
    Array.from({ length: 20 }, (_, i) => client.request({ url: `/api/item/${i}` })),
  );

  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(gw.count('/wx/login'), 1);
  assert.equal(wx.loginCalls, 1);
  assert.deepEqual(answers.map((r) => r.statusCode), Array(20).fill(200));
  for (let i = 0; i < 20; i += 1) {
    const sent = gw.callsTo(`/api/item/${i}`).map(bearerOf);
    assert.deepEqual(sent, ['Bearer access-1', 'Bearer access-2']);
  }
  assert.equal(client.token(), 'access-2');
  assert.equal(wx.storage.get('wxgate.refresh_token'), 'refresh-2');
});

test('a failed refresh (refresh_token_reused) falls back to one login', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.burnRefreshTokens();

  const answers = await Promise.all(Array.from({ length: 5 }, () => client.request({ url: '/api/a' })));

  assert.deepEqual(answers.map((r) => r.statusCode), Array(5).fill(200));
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(gw.count('/wx/login'), 2);
  assert.equal(wx.loginCalls, 2);
  assert.equal(gw.count('/api/a', 'GET'), 10);
  assert.equal(client.token(), 'access-2');
});

test('a renewal fallback login is shared with a concurrent login() call', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.burnRefreshTokens();

  const [res, answer] = await Promise.all([client.request({ url: '/api/a' }), client.login()]);
  assert.equal(res.statusCode, 200);
  assert.equal(answer.token, 'access-2');
  assert.equal(wx.loginCalls, 2);
});

test('a replay that is rejected again resolves with that answer (no loop)', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.rejectAlways = 'token_revoked';

  const res = await client.request({ url: '/api/a' });

  assert.equal(res.statusCode, 401);
  assert.equal(res.data.error, 'token_revoked');
  assert.equal(gw.count('/api/a', 'GET'), 2);
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(gw.count('/wx/login'), 1);
});

test('when renewal fails completely the request rejects and is not replayed', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.burnRefreshTokens();
  wx.loginFails = true;

  await assert.rejects(client.request({ url: '/api/a' }), { error: 'wx_login_failed' });
  assert.equal(gw.count('/api/a', 'GET'), 1);
  assert.equal(gw.count('/wx/refresh'), 1);
});

test('a stale-token 401 arriving after another caller renewed replays without a second refresh', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.expireAll();

  // Hold back the answer to the slow request sent with the old token.
  const gate = deferred();
  gw.hold = (call) => (call.path === '/api/slow' && bearerOf(call) === 'Bearer access-1' ? gate.promise : null);

  const slow = client.request({ url: '/api/slow' });
  const fast = await client.request({ url: '/api/fast' });
  assert.equal(fast.statusCode, 200);
  assert.equal(gw.count('/wx/refresh'), 1);

  gate.resolve();
  const late = await slow;
  assert.equal(late.statusCode, 200);
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.deepEqual(gw.callsTo('/api/slow').map(bearerOf), ['Bearer access-1', 'Bearer access-2']);
});

test('a token known to be expired is renewed before sending (one refresh, no 401)', async () => {
  const { gw, client } = setup();
  gw.expiresIn = 0;
  await client.login();
  gw.expiresIn = 7200;

  const answers = await Promise.all(Array.from({ length: 5 }, () => client.request({ url: '/api/a' })));

  assert.deepEqual(answers.map((r) => r.statusCode), Array(5).fill(200));
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.deepEqual(gw.callsTo('/api/a').map(bearerOf), Array(5).fill('Bearer access-2'));
});

test('non-token errors pass through untouched', async () => {
  const { gw, client } = setup();
  await client.login();

  const forbidden = await client.request({ url: '/api/forbidden' });
  assert.equal(forbidden.statusCode, 403);
  assert.deepEqual(forbidden.data, { error: 'forbidden', message: 'no' });

  const backend401 = await client.request({ url: '/api/not-member' });
  assert.equal(backend401.statusCode, 401);
  assert.equal(backend401.data.error, 'not_member');

  const broken = await client.request({ url: '/api/broken' });
  assert.equal(broken.statusCode, 500);
  assert.equal(broken.data, 'upstream exploded');

  assert.equal(gw.count('/api/forbidden', 'GET'), 1);
  assert.equal(gw.count('/api/not-member', 'GET'), 1);
  assert.equal(gw.count('/api/broken', 'GET'), 1);
  assert.equal(gw.count('/wx/refresh'), 0);
  assert.equal(gw.count('/wx/login'), 1);
});

test('a network failure rejects with the wx.request fail error', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.networkDown = true;

  await assert.rejects(client.request({ url: '/api/a' }), { errMsg: 'request:fail timeout' });
  assert.equal(gw.count('/api/a', 'GET'), 1);
  assert.equal(client.token(), 'access-1');
});

// ---------------------------------------------------------------------------
// Logout

test('logout revokes the token and clears storage', async () => {
  const { gw, wx, client } = setup();
  await client.login();

  const res = await client.logout();

  assert.equal(res.statusCode, 200);
  assert.deepEqual(res.data, { revoked: 'token' });
  const [call] = gw.callsTo('/wx/logout');
  assert.equal(bearerOf(call), 'Bearer access-1');
  assert.deepEqual(call.data, {});
  assert.equal(wx.storage.size, 0);
  assert.equal(client.token(), null);

  // The next request logs in again.
  await client.request({ url: '/api/a' });
  assert.equal(gw.count('/wx/login'), 2);
});

test('logout({ all: true }) sends { all: true }', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  const res = await client.logout({ all: true });
  assert.deepEqual(res.data, { revoked: 'all' });
  assert.deepEqual(gw.callsTo('/wx/logout')[0].data, { all: true });
  assert.equal(wx.storage.size, 0);
});

test('logout clears storage even when the network fails, then rejects', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.networkDown = true;
  await assert.rejects(client.logout(), { errMsg: 'request:fail timeout' });
  assert.equal(wx.storage.size, 0);
});

test('logout with an expired token renews once so that the revocation happens', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  const res = await client.logout({ all: true });
  assert.equal(res.statusCode, 200);
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.deepEqual(gw.callsTo('/wx/logout').map(bearerOf), ['Bearer access-1', 'Bearer access-2']);
  assert.equal(wx.storage.size, 0);
});

test('logout without a token sends nothing and resolves null', async () => {
  const { gw, wx, client } = setup();
  assert.equal(await client.logout(), null);
  assert.equal(gw.calls.length, 0);
  assert.equal(wx.loginCalls, 0);
});

// ---------------------------------------------------------------------------
// Phone number

test('phoneNumber resolves with the number', async () => {
  const { gw, client } = setup();
  const phone = await client.phoneNumber('phone-ok');
  assert.deepEqual(phone, { phoneNumber: '+86 13800000000', purePhoneNumber: '13800000000', countryCode: '86' });
  const [call] = gw.callsTo('/wx/phone');
  assert.deepEqual(call.data, { code: 'phone-ok' });
  assert.equal(bearerOf(call), 'Bearer access-1');
});

test('phoneNumber rejects with the gateway error', async () => {
  const { client } = setup();
  await assert.rejects(client.phoneNumber('phone-bad'), (err) => {
    assert.ok(err instanceof WxGateError);
    assert.equal(err.error, 'invalid_phone_code');
    assert.equal(err.message, 'bad phone code');
    assert.equal(err.statusCode, 400);
    return true;
  });
});

test('phoneNumber renews an expired token like request does', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.expireAll();
  const phone = await client.phoneNumber('phone-ok');
  assert.equal(phone.purePhoneNumber, '13800000000');
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(gw.count('/wx/phone'), 2);
});

// ---------------------------------------------------------------------------
// WebSocket

test('connectSocket logs in, adds the Bearer header and maps https to wss', async () => {
  const { gw, wx, client } = setup({ baseURL: `${BASE}/base/` });
  const task = await client.connectSocket({ url: '/ws/chat', header: { 'x-room': '7' }, protocols: ['chat'] });

  assert.equal(gw.count('/wx/login'), 1);
  assert.equal(task, wx.sockets[0]);
  assert.deepEqual(task.options, {
    url: 'wss://gw.test/base/ws/chat',
    header: { 'x-room': '7', Authorization: 'Bearer access-1' },
    protocols: ['chat'],
  });
});

test('connectSocket maps http to ws and keeps an absolute ws(s) URL', async () => {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  const serve = wx.request;
  wx.request = (options) => serve({ ...options, url: options.url.replace('http://plain.test', BASE) });
  const client = createClient({ baseURL: 'http://plain.test', wx });

  const plain = await client.connectSocket({ url: 'ws/chat' });
  assert.equal(plain.options.url, 'ws://plain.test/ws/chat');
  const absolute = await client.connectSocket({ url: 'wss://elsewhere.test/ws' });
  assert.equal(absolute.options.url, 'wss://elsewhere.test/ws');
  assert.equal(absolute.options.header.Authorization, 'Bearer access-1');
  assert.equal(TOKEN_CLOSE_CODE, 4001);
});

test('connectSocket renews a token known to be expired before connecting', async () => {
  const { gw, client } = setup();
  gw.expiresIn = 0;
  await client.login();
  const task = await client.connectSocket({ url: '/ws' });
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(task.options.header.Authorization, 'Bearer access-2');
});

// ---------------------------------------------------------------------------
// Storage

test('storage keys are namespaced by storageKey and nothing else is stored', async () => {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  const shop = createClient({ baseURL: BASE, wx, storageKey: 'shop' });
  const admin = createClient({ baseURL: BASE, wx, storageKey: 'admin' });

  await shop.login();
  await shop.request({ url: '/api/a' });
  assert.deepEqual([...wx.storage.keys()].sort(), ['shop.expires_at', 'shop.refresh_token', 'shop.token']);

  await admin.login();
  assert.equal(shop.token(), 'access-1');
  assert.equal(admin.token(), 'access-2');

  await shop.logout();
  assert.deepEqual([...wx.storage.keys()].sort(), ['admin.expires_at', 'admin.refresh_token', 'admin.token']);
  assert.equal(admin.token(), 'access-2');
});

test('a client picks up the tokens a previous run stored', async () => {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  await createClient({ baseURL: BASE, wx }).login();

  const next = createClient({ baseURL: BASE, wx });
  const res = await next.request({ url: '/api/a' });
  assert.equal(res.statusCode, 200);
  assert.equal(gw.count('/wx/login'), 1);
});

test('createClient needs a baseURL and a wx object', () => {
  assert.throws(() => createClient({ wx: {} }), TypeError);
  assert.throws(() => createClient({ baseURL: BASE }), /no wx object/);
});

test('createClient defaults to the global wx', async () => {
  const gw = fakeGateway();
  globalThis.wx = fakeWx(gw);
  try {
    const client = createClient({ baseURL: BASE });
    await client.login();
    assert.equal(globalThis.wx.storage.get('wxgate.token'), 'access-1');
  } finally {
    delete globalThis.wx;
  }
});

test('pathPrefix moves the gateway endpoints', async () => {
  const gw = fakeGateway();
  const wx = fakeWx(gw);
  const paths = [];
  const serve = wx.request;
  wx.request = (options) => {
    paths.push(new URL(options.url).pathname);
    serve({ ...options, url: options.url.replace('/auth/', '/wx/') });
  };
  const client = createClient({ baseURL: BASE, wx, pathPrefix: '/auth/' });
  await client.login();
  gw.expireAll();
  await client.phoneNumber('phone-ok');
  await client.logout();
  assert.deepEqual(paths, ['/auth/login', '/auth/phone', '/auth/refresh', '/auth/phone', '/auth/logout']);
});

// ---------------------------------------------------------------------------
// Logout racing other work, refused refresh tokens, odd bodies

test('a logout during a login revokes what the login stored and leaves nothing behind', async () => {
  const { gw, wx, client } = setup();
  const gate = deferred();
  gw.hold = (call) => (call.path === '/wx/login' ? gate.promise : null);

  const login = client.login();
  const logout = client.logout();
  await nextTick();
  gate.resolve();

  assert.equal((await login).token, 'access-1');
  const res = await logout;
  assert.equal(res.statusCode, 200);
  assert.deepEqual(gw.callsTo('/wx/logout').map(bearerOf), ['Bearer access-1']);
  assert.equal(wx.storage.size, 0);
  assert.equal(client.token(), null);
});

test('a logout waits for a renewal under way, then revokes what it stored', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  const gate = deferred();
  gw.hold = (call) => (call.path === '/wx/refresh' ? gate.promise : null);

  const pending = client.request({ url: '/api/a' });
  while (gw.count('/wx/refresh') === 0) await nextTick();
  const logout = client.logout();
  await nextTick();
  gate.resolve();

  assert.equal((await pending).statusCode, 200);
  assert.equal((await logout).statusCode, 200);
  assert.deepEqual(gw.callsTo('/wx/logout').map(bearerOf), ['Bearer access-2']);
  assert.equal(wx.storage.size, 0);
});

test('a login begun while a logout waits stores nothing', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  const refreshGate = deferred();
  const loginGate = deferred();
  gw.hold = (call) => {
    if (call.path === '/wx/refresh') return refreshGate.promise;
    if (call.path === '/wx/login' && gw.count('/wx/login') === 2) return loginGate.promise;
    return null;
  };

  const pending = client.request({ url: '/api/a' });
  while (gw.count('/wx/refresh') === 0) await nextTick();
  const logout = client.logout(); // waits for the refresh
  const late = client.login(); // begun before the logout is through
  while (gw.count('/wx/login') < 2) await nextTick();
  refreshGate.resolve();
  assert.equal((await logout).statusCode, 200);
  loginGate.resolve();

  await assert.rejects(late, { error: 'logged_out', statusCode: 0 });
  assert.equal((await pending).statusCode, 200);
  assert.equal(wx.storage.size, 0);
  assert.equal(client.token(), null);
});

test('a request rejected after a logout is not renewed', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  const gate = deferred();
  gw.hold = (call) => (call.path === '/api/slow' ? gate.promise : null);

  const slow = client.request({ url: '/api/slow' });
  await nextTick();
  await client.logout();
  gate.resolve();

  const res = await slow;
  assert.equal(res.statusCode, 401);
  assert.equal(res.data.error, 'token_revoked');
  assert.equal(gw.count('/wx/refresh'), 0);
  assert.equal(gw.count('/wx/login'), 1);
  assert.equal(gw.count('/api/slow', 'GET'), 1);
  assert.equal(wx.storage.size, 0);
});

test('logout with an expired token and a refused refresh token does not log in', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.burnRefreshTokens();

  const res = await client.logout();

  assert.equal(res.statusCode, 401);
  assert.equal(res.data.error, 'token_expired');
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.equal(gw.count('/wx/login'), 1);
  assert.equal(wx.loginCalls, 1);
  assert.equal(wx.storage.size, 0);
});

test('a refresh token the gateway refused is never presented again', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.burnRefreshTokens();
  wx.loginFails = true;

  await assert.rejects(client.request({ url: '/api/a' }), { error: 'wx_login_failed' });
  assert.equal(wx.storage.has('wxgate.refresh_token'), false);
  await assert.rejects(client.request({ url: '/api/a' }), { error: 'wx_login_failed' });
  assert.deepEqual(gw.callsTo('/wx/refresh').map((c) => c.data.refresh_token), ['refresh-1']);

  wx.loginFails = false;
  const res = await client.request({ url: '/api/a' });
  assert.equal(res.statusCode, 200);
  assert.equal(client.token(), 'access-2');
});

test('a refresh that fails on the network keeps the refresh token for the next try', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  const serve = gw.serve;
  gw.serve = (options) => {
    if (options.url.endsWith('/wx/refresh') && gw.count('/wx/refresh') === 0) {
      gw.calls.push({ path: '/wx/refresh', method: 'POST', header: {}, data: options.data });
      setTimeout(() => options.fail({ errMsg: 'request:fail timeout' }), 0);
      return;
    }
    serve(options);
  };
  wx.loginFails = true;

  await assert.rejects(client.request({ url: '/api/a' }), { error: 'wx_login_failed' });
  assert.equal(wx.storage.get('wxgate.refresh_token'), 'refresh-1');
  const res = await client.request({ url: '/api/a' });
  assert.equal(res.statusCode, 200);
  assert.equal(gw.count('/wx/refresh'), 2);
  assert.equal(client.token(), 'access-2');
});

test('token_missing is passed through, not renewed', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.rejectAlways = 'token_missing';
  const res = await client.request({ url: '/api/a' });
  assert.equal(res.statusCode, 401);
  assert.equal(res.data.error, 'token_missing');
  assert.equal(gw.count('/wx/refresh'), 0);
  assert.equal(gw.count('/api/a', 'GET'), 1);
});

test('a token rejection is recognised in an arraybuffer answer', async () => {
  const { gw, client } = setup();
  await client.login();
  gw.expireAll();

  const res = await client.request({ url: '/api/a', responseType: 'arraybuffer' });

  assert.equal(res.statusCode, 200);
  assert.ok(res.data instanceof ArrayBuffer);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(res.data)), { path: '/api/a', openid: 'openid-code-1' });
  assert.equal(gw.count('/wx/refresh'), 1);
  assert.deepEqual(gw.callsTo('/api/a').map(bearerOf), ['Bearer access-1', 'Bearer access-2']);
});

test('phoneNumber rejects a 200 that is not a phone number', async () => {
  const { gw, client } = setup();
  gw.override = (call) => (call.path === '/wx/phone' ? reply(200, '<html>captive portal</html>') : null);
  await assert.rejects(client.phoneNumber('phone-ok'), (err) => {
    assert.ok(err instanceof WxGateError);
    assert.equal(err.error, 'invalid_response');
    assert.equal(err.statusCode, 200);
    return true;
  });
});

test('a login answered 200 with something else rejects with invalid_response and stores nothing', async () => {
  const { gw, wx, client } = setup();
  gw.override = (call) => (call.path === '/wx/login' ? reply(200, '<html>captive portal</html>') : null);
  await assert.rejects(client.login(), { error: 'invalid_response', statusCode: 200 });
  assert.equal(wx.storage.size, 0);
});

// ---------------------------------------------------------------------------
// Sessions and devices

test('login sends the device label, cleaned and cut to 64 characters; device: false sends none', async () => {
  const { gw, wx, client } = setup();
  wx.getDeviceInfo = () => ({ platform: 'ios', model: `iPhone\n${'x'.repeat(100)}`, system: 'iOS 17.4', brand: 'Apple' });
  await client.login();
  const { device } = gw.callsTo('/wx/login')[0].data;
  assert.equal(device.platform, 'ios');
  assert.equal(device.system, 'iOS 17.4');
  assert.equal(device.model, `iPhone${'x'.repeat(58)}`);
  assert.equal(device.brand, undefined);

  const off = setup({ device: false });
  off.wx.getDeviceInfo = wx.getDeviceInfo;
  await off.client.login();
  assert.equal(off.gw.callsTo('/wx/login')[0].data.device, undefined);

  const broken = setup();
  broken.wx.getDeviceInfo = () => {
    throw new Error('not here');
  };
  await broken.client.login();
  assert.equal(broken.gw.callsTo('/wx/login')[0].data.device, undefined);
});

test('sessions(), endSession(id) and logout({ others: true }) keep this session', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.override = (call) => {
    if (call.path === '/wx/sessions' && call.method === 'GET') {
      return reply(200, { sessions: [{ id: 'a', current: true }, { id: 'b/c', current: false }] });
    }
    if (call.path === '/wx/sessions/b%2Fc' && call.method === 'DELETE') return reply(200, { ended: 'b/c' });
    if (call.path === '/wx/sessions/gone') return reply(404, { error: 'session_not_found', message: 'no' });
    if (call.path === '/wx/logout' && call.data && call.data.others) return reply(200, { revoked: 'others' });
    return null;
  };
  const list = await client.sessions();
  assert.deepEqual(list.map((s) => s.id), ['a', 'b/c']);
  assert.equal(bearerOf(gw.callsTo('/wx/sessions')[0]), 'Bearer access-1');
  assert.deepEqual(await client.endSession('b/c'), { ended: 'b/c' });
  await assert.rejects(client.endSession('gone'), (e) => e instanceof WxGateError && e.error === 'session_not_found' && e.statusCode === 404);
  const res = await client.logout({ others: true });
  assert.deepEqual(res.data, { revoked: 'others' });
  assert.equal(client.token(), 'access-1', 'this session goes on');
  assert.equal(wx.storage.get('wxgate.refresh_token'), 'refresh-1');
});

test('a session ended on purpose is surfaced with its reason, never answered with a new login', async () => {
  const { gw, wx, client } = setup();
  await client.login();
  gw.expireAll();
  gw.override = (call) =>
    call.path === '/wx/refresh' ? reply(401, { error: 'session_ended', message: 'ended', reason: 'replaced' }) : null;
  const isEnded = (e) => e instanceof WxGateError && e.error === 'session_ended' && e.reason === 'replaced';
  await assert.rejects(client.request({ url: '/api/a' }), isEnded);
  // Its tokens are gone, and later requests are refused the same, without a login.
  assert.equal(client.token(), null);
  await assert.rejects(client.request({ url: '/api/a' }), isEnded);
  assert.equal(await client.logout({ others: true }), null);
  assert.equal(gw.count('/wx/login'), 1, 'no silent login');

  // The app logs in again itself: then a request answered session_ended
  // resolves with that answer once, and the next ones are refused.
  gw.override = (call) =>
    call.path === '/api/b' ? reply(401, { error: 'session_ended', message: 'ended', reason: 'ended' }) : null;
  await client.login();
  assert.equal(gw.count('/wx/login'), 2);
  const res = await client.request({ url: '/api/b' });
  assert.equal(res.statusCode, 401);
  await assert.rejects(client.request({ url: '/api/c' }), (e) => e.error === 'session_ended' && e.reason === 'ended');
  assert.equal(gw.count('/wx/login'), 2, 'no silent login');
  assert.equal(wx.storage.size, 0);
});

test('a banned user is not logged in again behind the app', async () => {
  const { gw, client } = setup();
  gw.override = (call) => (call.path === '/wx/login' ? reply(403, { error: 'user_banned', message: 'banned' }) : null);
  await assert.rejects(client.request({ url: '/api/a' }), (e) => e.error === 'user_banned');
  await assert.rejects(client.request({ url: '/api/a' }), (e) => e.error === 'user_banned');
  assert.equal(gw.count('/wx/login'), 1);
  gw.override = () => null;
  await client.login();
  assert.equal((await client.request({ url: '/api/a' })).statusCode, 200);
});
