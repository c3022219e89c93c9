// wxgate client for WeChat Mini Programs: logs in through the gateway, keeps
// the token pair in storage, puts `Authorization: Bearer` on every request and
// renews the token when the gateway says it is no longer good.
//
// Dependency-free, one file. Everything it touches of the platform goes
// through the `wx` object given to `createClient`, so it runs unchanged in a
// mini program and in Node tests with a fake `wx`.

/** Close code the gateway uses on a WebSocket whose token expired or was revoked. */
export const TOKEN_CLOSE_CODE = 4001;

/**
 * 401 codes that mean "this access token is not good": renew and replay once.
 * Not `token_missing`: the client always sends a token, so that one means
 * something on the way dropped the header, which a new token does not fix.
 */
const TOKEN_ERRORS = ['token_expired', 'token_revoked', 'token_invalid'];

/**
 * Answers that mean the session was ended on purpose (`reason` says why):
 * surfaced to the app, never answered with a silent new login.
 */
const ENDED_ERRORS = ['session_ended', 'user_banned'];

/** The largest binary (`responseType: 'arraybuffer'`) body read for an error code. */
const MAX_BINARY_ERROR_BODY = 4096;

const JSON_HEADER = { 'content-type': 'application/json' };

/** A gateway (or wx.login) failure: `.error` is the machine-readable code. */
export class WxGateError extends Error {
  constructor(error, message, statusCode, cause) {
    super(message || error);
    this.name = 'WxGateError';
    this.error = error;
    this.statusCode = statusCode;
    if (cause !== undefined) this.cause = cause;
  }
}

/**
 * Create a client for one gateway. Create it once (in app.js) and share it:
 * the single in-flight login and renewal are per client.
 */
export function createClient({
  baseURL,
  wx = platformWx(),
  storageKey = 'wxgate',
  appid,
  pathPrefix = '/wx',
  device = true,
} = {}) {
  if (!baseURL) throw new TypeError('wxgate: createClient needs a baseURL');
  if (!wx) throw new TypeError('wxgate: no wx object (pass options.wx outside a mini program)');

  const base = trimTrailingSlashes(baseURL);
  const prefix = String(pathPrefix).replace(/^\/+|\/+$/g, '');
  const endpoint = (name) => [base, prefix, name].filter(Boolean).join('/');
  const session = sessionStore(wx, storageKey);

  // The one login and the one renewal under way, shared by every caller
  // that needs them at the same time (so 20 requests finding an expired
  // token cost one refresh, not 20 refresh tokens racing each other).
  let loginInFlight = null;
  let renewalInFlight = null;
  // Bumped by logout(): a login or renewal begun before it stores nothing,
  // and a request sent before it is not renewed and replayed after it.
  let generation = 0;

  // The refusal of a session ended on purpose (session_ended, user_banned):
  // until the app calls login() itself, nothing logs in behind the user's back.
  let ended = null;

  /** The app's own login(): also the way back after a session ended. */
  function explicitLogin() {
    ended = null;
    return login();
  }

  /** Remember a session ended on purpose; drop its tokens. */
  function endedBy(err) {
    ended = err;
    session.clear();
    return err;
  }

  function login() {
    if (!loginInFlight) {
      loginInFlight = settled(loginOnce(), () => {
        loginInFlight = null;
      });
    }
    return loginInFlight;
  }

  async function loginOnce() {
    const started = generation;
    const code = await wxLoginCode(wx);
    const body = appid ? { code, appid } : { code };
    // The label the user sees in their session list (never trusted by the gateway).
    const label = device ? deviceLabel(wx) : undefined;
    if (label) body.device = label;
    const res = await callRequest(wx, jsonPost(endpoint('login'), body));
    // A banned user: no new login until the app asks for one.
    if (isEndedAnswer(res)) throw endedBy(errorFromResponse(res));
    return acceptGrant(res, started);
  }

  async function refresh(refreshToken) {
    const started = generation;
    const res = await callRequest(wx, jsonPost(endpoint('refresh'), { refresh_token: refreshToken }));
    // Refused (reused, revoked, expired, unknown): never present it again.
    // A network failure or a 5xx leaves it for the next try.
    if (res.statusCode === 401 && session.refreshToken() === refreshToken) {
      session.dropRefreshToken();
    }
    return acceptGrant(res, started);
  }

  /** Store a login/refresh answer, or turn a refusal into an error. */
  function acceptGrant(res, started) {
    const grant = grantOf(res);
    if (!grant) throw errorFromResponse(res);
    if (generation !== started) {
      throw new WxGateError('logged_out', 'logout() was called while this login was under way', 0);
    }
    session.save(grant);
    return grant;
  }

  /** A new access token: refresh if we can, log in again if that fails. */
  function renew() {
    if (!renewalInFlight) {
      renewalInFlight = settled(refreshOrLogin(), () => {
        renewalInFlight = null;
      });
    }
    return renewalInFlight;
  }

  async function refreshOrLogin() {
    const tokenBefore = session.token();
    const refreshToken = session.refreshToken();
    if (refreshToken) {
      try {
        return (await refresh(refreshToken)).token;
      } catch (e) {
        // The session was ended on purpose (from another device, by a newer
        // login, a lifetime): the app tells the user; no silent new login.
        if (e instanceof WxGateError && ENDED_ERRORS.includes(e.error)) throw endedBy(e);
        // Reused, revoked, expired or unreachable: a new login is the way
        // back (wx.login is silent, the user sees nothing).
      }
    }
    // A login() of another caller may have finished while the refresh was out.
    const current = session.token();
    if (current && current !== tokenBefore) return current;
    return (await login()).token;
  }

  /** The token to send now: waits for a renewal under way, logs in if there is none. */
  async function usableToken() {
    if (ended) throw ended;
    if (renewalInFlight) return renewalInFlight;
    const token = session.token();
    if (!token) return (await login()).token;
    // Known to be expired: renewing first saves a 401 round trip, and a
    // WebSocket handshake refused with 401 cannot be told apart from other failures.
    if (session.isExpired()) return renew();
    return token;
  }

  /** After a token rejection: the token to replay with. */
  function tokenAfterRejection(rejected) {
    const current = session.token();
    // Someone renewed while this request was out: its token is the answer.
    // Renewing again would rotate the refresh token a second time for nothing.
    if (current && current !== rejected) return current;
    return renew();
  }

  function send(options, token) {
    // The caller's callbacks are dropped: the answer comes through the Promise,
    // and a first answer that gets replayed must not reach them.
    const { url, header, success, fail, complete, ...rest } = options;
    return callRequest(wx, { ...rest, url: httpURL(url), header: withBearer(header, token) });
  }

  /** Send with the token; on a token rejection renew once and replay once. */
  async function request(options) {
    const started = generation;
    const sentWith = await usableToken();
    const first = await send(options, sentWith);
    // After a logout, a rejection is the logout's doing: no new login for it.
    if (isEndedAnswer(first)) {
      endedBy(errorFromResponse(first));
      return first;
    }
    if (!isTokenRejection(first) || generation !== started) return first;
    return send(options, await tokenAfterRejection(sentWith));
  }

  /** The user's live sessions in this app (`GET /wx/sessions`), oldest first. */
  async function sessions() {
    const res = await request({ url: endpoint('sessions'), method: 'GET' });
    const body = res.statusCode === 200 ? parseJSON(res.data) : null;
    if (!body || !Array.isArray(body.sessions)) throw errorFromResponse(res);
    return body.sessions;
  }

  /** End one of the user's sessions (`DELETE /wx/sessions/{id}`): `{ ended: id }`. */
  async function endSession(id) {
    const res = await request({
      url: endpoint(`sessions/${encodeURIComponent(String(id))}`),
      method: 'DELETE',
    });
    const body = res.statusCode === 200 ? parseJSON(res.data) : null;
    if (!body || typeof body.ended !== 'string') throw errorFromResponse(res);
    return body;
  }

  async function logout({ all = false, others = false } = {}) {
    if (others) {
      // Every other session ends; this one goes on, its tokens kept.
      // Without a session there is nothing to keep: no login for it.
      if (!session.token()) return null;
      return request({ url: endpoint('logout'), method: 'POST', header: JSON_HEADER, data: { others: true } });
    }
    // A login or renewal under way finishes first, so that what it stores
    // is what gets revoked; anything begun after this point stores nothing.
    await Promise.all([loginInFlight, renewalInFlight].map((p) => p && p.catch(ignore)));
    generation += 1;
    ended = null;
    const token = session.token();
    const refreshToken = session.refreshToken();
    session.clear();
    // Nothing to revoke: do not log in just to log out.
    if (!token) return null;

    const options = {
      url: endpoint('logout'),
      method: 'POST',
      header: JSON_HEADER,
      data: all ? { all: true } : {},
    };
    const first = await send(options, token);
    if (!isTokenRejection(first) || !refreshToken) return first;
    // The token ran out, but its session lives on in the refresh token:
    // revoke it with a refreshed token (never with a new login).
    const renewed = grantOf(await callRequest(wx, jsonPost(endpoint('refresh'), { refresh_token: refreshToken })));
    return renewed ? send(options, renewed.token) : first;
  }

  async function phoneNumber(code) {
    const res = await request({
      url: endpoint('phone'),
      method: 'POST',
      header: JSON_HEADER,
      data: { code },
    });
    const number = res.statusCode === 200 ? parseJSON(res.data) : null;
    if (!number || typeof number.purePhoneNumber !== 'string') throw errorFromResponse(res);
    return number;
  }

  async function connectSocket(options) {
    const token = await usableToken();
    return wx.connectSocket({
      ...options,
      url: socketURL(options.url),
      header: withBearer(options.header, token),
    });
  }

  function httpURL(url) {
    if (/^https?:\/\//i.test(url)) return url;
    return `${base}/${String(url).replace(/^\/+/, '')}`;
  }

  function socketURL(url) {
    if (/^wss?:\/\//i.test(url)) return url;
    return httpURL(url).replace(/^http(s?):\/\//i, 'ws$1://');
  }

  return Object.freeze({
    login: explicitLogin,
    request,
    logout,
    sessions,
    endSession,
    phoneNumber,
    connectSocket,
    token: () => session.token(),
  });
}

// ---------------------------------------------------------------------------
// Storage

/**
 * The token pair under `<storageKey>.token`, `.refresh_token`, `.expires_at`.
 * Read from storage every time rather than cached, so that clearing the
 * storage (e.g. wx.clearStorageSync) logs the client out as expected.
 */
function sessionStore(wx, storageKey) {
  const keys = {
    token: `${storageKey}.token`,
    refreshToken: `${storageKey}.refresh_token`,
    expiresAt: `${storageKey}.expires_at`,
  };
  // getStorageSync answers '' for a missing key.
  const read = (key) => wx.getStorageSync(key) || null;

  return {
    token: () => read(keys.token),
    refreshToken: () => read(keys.refreshToken),
    isExpired() {
      const expiresAt = read(keys.expiresAt);
      return typeof expiresAt === 'number' && Date.now() >= expiresAt;
    },
    save(grant) {
      wx.setStorageSync(keys.token, grant.token);
      wx.setStorageSync(keys.refreshToken, grant.refresh_token);
      // expires_in is relative, so this does not depend on the device clock
      // being right, only on it not jumping.
      if (typeof grant.expires_in === 'number') {
        wx.setStorageSync(keys.expiresAt, Date.now() + grant.expires_in * 1000);
      } else {
        wx.removeStorageSync(keys.expiresAt);
      }
    },
    dropRefreshToken() {
      wx.removeStorageSync(keys.refreshToken);
    },
    clear() {
      Object.values(keys).forEach((key) => wx.removeStorageSync(key));
    },
  };
}

// ---------------------------------------------------------------------------
// wx plumbing

function platformWx() {
  // `wx` is a global in mini programs; old base libraries lack globalThis.
  if (typeof wx !== 'undefined') return wx; // eslint-disable-line no-undef
  return typeof globalThis !== 'undefined' ? globalThis.wx : undefined;
}

/** Longest device label field the gateway takes, in characters. */
const MAX_DEVICE_FIELD = 64;

/**
 * `{ platform, model, system }` from wx.getDeviceInfo (or the older
 * wx.getSystemInfoSync), each cut to what the gateway takes; undefined when
 * the platform says nothing.
 */
function deviceLabel(wx) {
  let info = null;
  try {
    if (typeof wx.getDeviceInfo === 'function') info = wx.getDeviceInfo();
    else if (typeof wx.getSystemInfoSync === 'function') info = wx.getSystemInfoSync();
  } catch (_) {
    return undefined;
  }
  if (!info) return undefined;
  const label = {};
  for (const key of ['platform', 'model', 'system']) {
    const value = info[key];
    if (typeof value !== 'string') continue;
    // eslint-disable-next-line no-control-regex
    const clean = Array.from(value.replace(/[\u0000-\u001f\u007f-\u009f]/g, ''))
      .slice(0, MAX_DEVICE_FIELD)
      .join('');
    if (clean) label[key] = clean;
  }
  return Object.keys(label).length ? label : undefined;
}

/** wx.request as a Promise: resolves with any HTTP answer, rejects on `fail`. */
function callRequest(wx, options) {
  return new Promise((resolve, reject) => {
    wx.request({ ...options, success: resolve, fail: reject });
  });
}

function wxLoginCode(wx) {
  return new Promise((resolve, reject) => {
    const failed = (cause) => {
      const message = (cause && cause.errMsg) || 'wx.login failed';
      reject(new WxGateError('wx_login_failed', message, 0, cause));
    };
    wx.login({
      success: (res) => (res && res.code ? resolve(res.code) : failed(res)),
      fail: failed,
    });
  });
}

/** `promise`, with `done` run once it settles either way (no Promise#finally on old base libraries). */
function settled(promise, done) {
  return promise.then(
    (value) => {
      done();
      return value;
    },
    (err) => {
      done();
      throw err;
    },
  );
}

function ignore() {}

/** A login or refresh answer's body, or null when it is not one. */
function grantOf(res) {
  const grant = res.statusCode === 200 ? parseJSON(res.data) : null;
  return grant && typeof grant.token === 'string' ? grant : null;
}

function jsonPost(url, data) {
  return { url, method: 'POST', header: JSON_HEADER, data };
}

function withBearer(header, token) {
  const merged = {};
  Object.keys(header || {}).forEach((name) => {
    // Drop any authorization header of the caller, whatever its case.
    if (name.toLowerCase() !== 'authorization') merged[name] = header[name];
  });
  merged.Authorization = `Bearer ${token}`;
  return merged;
}

/** A 401 saying the session was ended on purpose. */
function isEndedAnswer(res) {
  if (res.statusCode !== 401 && res.statusCode !== 403) return false;
  const body = parseJSON(res.data);
  return Boolean(body && ENDED_ERRORS.includes(body.error));
}

function isTokenRejection(res) {
  if (res.statusCode !== 401) return false;
  const body = parseJSON(res.data);
  return Boolean(body) && TOKEN_ERRORS.includes(body.error);
}

function errorFromResponse(res) {
  const body = parseJSON(res.data) || {};
  const message = typeof body.message === 'string' ? body.message : `gateway answered ${res.statusCode}`;
  const err = new WxGateError(errorCode(res.statusCode, body), message, res.statusCode);
  // session_ended: why (ended, replaced, idle, lifetime, ...), for the user.
  if (typeof body.reason === 'string') err.reason = body.reason;
  return err;
}

function errorCode(statusCode, body) {
  if (typeof body.error === 'string') return body.error;
  // A 200 that is not what was expected (e.g. a proxy's HTML page).
  if (statusCode === 200) return 'invalid_response';
  return `http_${statusCode}`;
}

/** The body as an object: wx.request parses JSON unless told otherwise. */
function parseJSON(data) {
  if (isArrayBuffer(data)) return parseJSON(asciiText(data));
  if (data && typeof data === 'object') return data;
  if (typeof data !== 'string') return null;
  try {
    const parsed = JSON.parse(data);
    return parsed && typeof parsed === 'object' ? parsed : null;
  } catch (_) {
    return null;
  }
}

function isArrayBuffer(data) {
  return typeof ArrayBuffer !== 'undefined' && data instanceof ArrayBuffer;
}

/**
 * A small binary body as text, byte for byte (the gateway's error bodies are
 * ASCII JSON; TextDecoder is missing on old base libraries).
 */
function asciiText(buffer) {
  if (buffer.byteLength > MAX_BINARY_ERROR_BODY) return null;
  const bytes = new Uint8Array(buffer);
  let text = '';
  for (let i = 0; i < bytes.length; i += 1) text += String.fromCharCode(bytes[i]);
  return text;
}

function trimTrailingSlashes(s) {
  return String(s).replace(/\/+$/, '');
}
