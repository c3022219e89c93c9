// End-to-end test of wxgate.js against a real gateway, started by tests/client.rs.
//
// Environment:
//   WXGATE_URL           the gateway, e.g. http://127.0.0.1:12345 (unset: the tests skip)
//   WXGATE_TOKEN_TTL_MS  access token lifetime the gateway was given (default 2000),
//                        with zero leeway; the tests poll until a token has expired
//   WXGATE_APPID         optional: sent with the login when the gateway serves several apps
//   WXGATE_PATH_PREFIX   optional: the gateway's [login] path_prefix (default /wx)
//
// The gateway runs in dev mode: its mock WeChat accepts any code, once, so
// the fake wx.login hands out fresh unique codes.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import { createClient } from '../wxgate.js';

const GATEWAY = process.env.WXGATE_URL;
const TTL_MS = Number(process.env.WXGATE_TOKEN_TTL_MS || 2000);
const APPID = process.env.WXGATE_APPID || undefined;
const PATH_PREFIX = process.env.WXGATE_PATH_PREFIX || '/wx';
const SKIP_REASON = 'WXGATE_URL not set: run by tests/client.rs';
const BURST = 20;

// ---------------------------------------------------------------------------
// A wx over Node's fetch, plus counters of what went over the wire.

function fetchWx() {
  const storage = new Map();
  const codePrefix = `e2e-${Math.random().toString(36).slice(2)}`;
  let codes = 0;
  return {
    storage,
    getStorageSync: (key) => (storage.has(key) ? storage.get(key) : ''),
    setStorageSync: (key, value) => {
      storage.set(key, value);
    },
    removeStorageSync: (key) => {
      storage.delete(key);
    },
    login({ success }) {
      codes += 1;
      const code = `${codePrefix}-${codes}`;
      setTimeout(() => success({ code }), 0);
    },
    request({ url, method = 'GET', header = {}, data, success, fail }) {
      const hasBody = data !== undefined && method !== 'GET' && method !== 'HEAD';
      const body = hasBody ? (typeof data === 'string' ? data : JSON.stringify(data)) : undefined;
      fetch(url, { method, headers: header, body })
        .then(toWxResponse)
        .then(success, (err) => fail({ errMsg: `request:fail ${err.message}` }));
    },
  };
}

/** What wx.request's success gets: data is parsed when the answer is JSON. */
async function toWxResponse(res) {
  const text = await res.text();
  const isJSON = (res.headers.get('content-type') || '').includes('json');
  let data = text;
  if (isJSON) {
    try {
      data = JSON.parse(text);
    } catch (_) {
      // Leave it as text, as wx.request does.
    }
  }
  return { statusCode: res.status, data, header: Object.fromEntries(res.headers) };
}

/** Wrap wx.request to count logins, refreshes and token_expired answers. */
function counting(wx) {
  const counts = { login: 0, refresh: 0, tokenExpired: 0 };
  const request = (options) => {
    const path = new URL(options.url).pathname;
    if (options.method === 'POST' && path === `${PATH_PREFIX}/login`) counts.login += 1;
    if (options.method === 'POST' && path === `${PATH_PREFIX}/refresh`) counts.refresh += 1;
    wx.request({
      ...options,
      success: (res) => {
        if (res.statusCode === 401 && res.data && res.data.error === 'token_expired') counts.tokenExpired += 1;
        options.success(res);
      },
    });
  };
  return { wx: { ...wx, request }, counts };
}

function setup() {
  const { wx, counts } = counting(fetchWx());
  const client = createClient({ baseURL: GATEWAY, wx, appid: APPID, pathPrefix: PATH_PREFIX });
  return { wx, counts, client };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls until the gateway refuses the client's token as expired and the
 * client's stored expiry has passed too (the token's exp is whole seconds).
 * Straight to the gateway, past the client and its counters.
 */
async function waitForExpiry(client, wx) {
  const token = client.token();
  const deadline = Date.now() + TTL_MS + 10000;
  for (;;) {
    const res = await fetch(`${GATEWAY}/api/hello`, { headers: { Authorization: `Bearer ${token}` } });
    const body = await res.text();
    if (res.status === 401) {
      assert.equal(JSON.parse(body).error, 'token_expired');
      if (Date.now() >= wx.getStorageSync('wxgate.expires_at')) return;
    } else {
      assert.equal(res.status, 200, body);
    }
    assert.ok(Date.now() < deadline, 'the token never expired');
    await sleep(50);
  }
}

function burst(client) {
  return Promise.all(Array.from({ length: BURST }, () => client.request({ url: '/api/hello' })));
}

// ---------------------------------------------------------------------------

test('e2e: login, shared refresh after the gateway says token_expired, logout', async (t) => {
  if (!GATEWAY) {
    t.skip(SKIP_REASON);
    return;
  }
  const { wx, counts, client } = setup();

  const answer = await client.login();
  assert.equal(typeof answer.token, 'string');
  assert.equal(typeof answer.refresh_token, 'string');
  assert.equal(answer.session_key, undefined);
  assert.equal(counts.login, 1);

  const hello = await client.request({ url: '/api/hello' });
  assert.equal(hello.statusCode, 200);
  assert.ok(JSON.stringify(hello.data).includes(answer.openid), 'the upstream saw the openid');

  await waitForExpiry(client, wx);
  // Hide the expiry from the client so that it sends the expired token and the
  // renewal is driven by the gateway's 401 token_expired answers.
  wx.setStorageSync('wxgate.expires_at', Date.now() + 3600 * 1000);
  const refreshesBefore = counts.refresh;
  const loginsBefore = counts.login;

  const answers = await burst(client);

  assert.deepEqual(answers.map((r) => r.statusCode), Array(BURST).fill(200));
  assert.equal(counts.tokenExpired, BURST, 'every request of the burst was first refused');
  assert.equal(counts.refresh - refreshesBefore, 1, 'exactly one refresh');
  assert.equal(counts.login - loginsBefore, 0, 'no new login');

  const oldToken = client.token();
  const bye = await client.logout();
  assert.equal(bye.statusCode, 200);
  assert.equal(client.token(), null);
  assert.equal(wx.storage.size, 0);

  const revoked = await fetch(`${GATEWAY}/api/hello`, { headers: { Authorization: `Bearer ${oldToken}` } });
  assert.equal(revoked.status, 401, 'the logged-out token is refused');

  const again = await client.request({ url: '/api/hello' });
  assert.equal(again.statusCode, 200);
  assert.equal(counts.login - loginsBefore, 1, 'a fresh login after logout');
});

test('e2e: a token known to be expired is renewed once before a burst', async (t) => {
  if (!GATEWAY) {
    t.skip(SKIP_REASON);
    return;
  }
  const { wx, counts, client } = setup();
  await client.login();

  await waitForExpiry(client, wx);
  const answers = await burst(client);

  assert.deepEqual(answers.map((r) => r.statusCode), Array(BURST).fill(200));
  assert.equal(counts.refresh, 1, 'exactly one refresh');
  assert.equal(counts.login, 1, 'no new login');
  assert.equal(counts.tokenExpired, 0, 'renewed before sending');
});
