// Type declarations for wxgate.js, the mini program client of the wxgate gateway.

/**
 * Close code of a WebSocket the gateway closes because its token expired
 * (reason `token_expired`) or was revoked (reason `token_revoked`). It does so
 * on routes configured with `close_on_token_expiry`.
 *
 * On `token_expired`, reconnect with {@link WxGateClient.connectSocket}: it
 * sees the stored expiry and renews the token first. On `token_revoked` the
 * session is gone (logout, or revoked by the backend): call
 * {@link WxGateClient.login} and then `connectSocket`.
 */
export declare const TOKEN_CLOSE_CODE: 4001;

/** A refusal from the gateway, or a failed `wx.login`. */
export declare class WxGateError extends Error {
  constructor(error: string, message?: string, statusCode?: number, cause?: unknown);
  readonly name: 'WxGateError';
  /**
   * Machine-readable code: the gateway's `error` field (`invalid_code`,
   * `rate_limited`, `invalid_phone_code`, ...), `wx_login_failed` when
   * `wx.login` failed, `invalid_response` for a 200 without the expected body,
   * `logged_out` for a login or renewal that `logout()` overtook (nothing was
   * stored), or `http_<status>` for an error answer without a JSON body.
   */
  readonly error: string;
  /** The gateway's `message`, or `wx.login`'s `errMsg`. */
  readonly message: string;
  /** HTTP status of the answer; 0 when there was none (`wx.login` failed, `logged_out`). */
  readonly statusCode: number;
  /** For `wx_login_failed`: what `wx.login` passed to `fail`. */
  readonly cause?: unknown;
  /**
   * For `session_ended`: why (`ended` from another device, `replaced` by a
   * newer login, `idle`, `lifetime`, ...). A renewal that meets it rejects
   * with it instead of logging in again: tell the user, then call `login()`.
   */
  readonly reason?: string;
}

/** What `wx.request` passes to `fail` (network error, timeout, abort...). */
export interface WxFailError {
  errMsg: string;
  errno?: number;
}

/** The subset of the mini program `wx` object the client uses. */
export interface WxLike {
  login(options: {
    success(res: { code: string }): void;
    fail(err: WxFailError): void;
  }): void;
  request(options: {
    url: string;
    method?: string;
    data?: unknown;
    header?: Record<string, string>;
    success(res: WxResponse): void;
    fail(err: WxFailError): void;
    [option: string]: unknown;
  }): unknown;
  connectSocket(options: ConnectSocketOptions & { url: string; header: Record<string, string> }): unknown;
  getStorageSync(key: string): any;
  setStorageSync(key: string, value: any): void;
  removeStorageSync(key: string): void;
}

export interface ClientOptions {
  /** The gateway, e.g. `https://api.example.com` (a path after the host is kept). */
  baseURL: string;
  /** The platform object; defaults to the mini program's global `wx`. */
  wx?: WxLike;
  /**
   * Prefix of the storage keys. The client stores exactly three keys:
   * `<storageKey>.token`, `<storageKey>.refresh_token` and
   * `<storageKey>.expires_at` (milliseconds since the epoch). Default `wxgate`.
   */
  storageKey?: string;
  /** Sent with every login; required when the gateway serves several mini programs. */
  appid?: string;
  /** The gateway's `[login] path_prefix`. Default `/wx`. */
  pathPrefix?: string;
  /**
   * Send a device label with each login (`platform`, `model`, `system` from
   * `wx.getDeviceInfo`, or `wx.getSystemInfoSync`), shown in the user's
   * session list. Default `true`.
   */
  device?: boolean;
}

/** One of the user's sessions, as `GET /wx/sessions` lists it. */
export interface SessionInfo {
  id: string;
  appid?: string;
  /** Unix milliseconds. */
  created_at: number;
  /** Unix milliseconds of the last refresh (the login's, before one). */
  refreshed_at: number;
  ip?: string;
  device?: { platform?: string; model?: string; system?: string };
  /** The session of this client. */
  current: boolean;
}

/** The answer of `/wx/login` and `/wx/refresh`. `session_key` is never returned. */
export interface LoginAnswer {
  token: string;
  token_type: 'Bearer';
  /** Seconds until `token` expires. */
  expires_in: number;
  refresh_token: string;
  openid: string;
  unionid: string | null;
  /** The backend's user id, when the gateway has a login hook. */
  uid?: string;
  /** The backend's roles for the user, when the gateway has a login hook. */
  roles?: string[];
}

/** Like `wx.request`'s options; `success`/`fail`/`complete` are ignored (use the Promise). */
export interface RequestOptions {
  /**
   * A path appended to `baseURL` (`/api/orders`), or an absolute `http(s)://`
   * URL used as is. The Bearer token is sent to it either way: only use
   * absolute URLs that point at the gateway.
   */
  url: string;
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH' | 'HEAD' | 'OPTIONS' | string;
  data?: string | object | ArrayBuffer;
  /** Any `Authorization` header given here is replaced by the client's. */
  header?: Record<string, string>;
  /** Other `wx.request` options (`timeout`, `dataType`, `responseType`, ...) pass through. */
  [option: string]: unknown;
}

/** `wx.request`'s success result. */
export interface WxResponse<T = any> {
  statusCode: number;
  /** Parsed JSON when the answer is JSON (with the default `dataType`). */
  data: T;
  header: Record<string, string>;
}

/** The answer of `/wx/phone`. */
export interface PhoneNumber {
  /** With the country code for numbers outside mainland China. */
  phoneNumber: string;
  /** Without the country code. */
  purePhoneNumber: string;
  countryCode: string;
}

/** Like `wx.connectSocket`'s options. */
export interface ConnectSocketOptions {
  /**
   * A path appended to `baseURL` with its scheme mapped (`https://` → `wss://`,
   * `http://` → `ws://`), or an absolute `ws(s)://` or `http(s)://` URL.
   */
  url: string;
  /** Any `Authorization` header given here is replaced by the client's. */
  header?: Record<string, string>;
  protocols?: string[];
  [option: string]: unknown;
}

export interface WxGateClient {
  /**
   * Log in: `wx.login()`, then `POST /wx/login` with the code (and `appid`),
   * and store the tokens. Concurrent callers, and renewals that fall back to a
   * login, share the one login under way.
   *
   * Rejects with a {@link WxGateError} (`wx_login_failed`, or the gateway's
   * code such as `invalid_code` with its status), or with the
   * {@link WxFailError} of `wx.request` on a network failure.
   */
  login(): Promise<LoginAnswer>;

  /**
   * `wx.request` with `Authorization: Bearer <token>`, logging in first when
   * there is no token.
   *
   * Renewal: when the stored expiry has passed, or the gateway answers 401
   * with `token_expired`, `token_revoked` or `token_invalid`, the client
   * renews once (`POST /wx/refresh`, and a new login if the refresh fails)
   * and replays the request once. A refresh token the gateway refused is
   * removed from storage. A 401 that comes back after `logout()` was called
   * is returned as is: no renewal, no new login. Concurrent requests share a single
   * renewal; a request that was sent with a token someone else already
   * replaced replays with the new one without renewing again. A replay that
   * is refused again resolves with that answer.
   *
   * Resolves with every HTTP answer, errors included (like `wx.request`;
   * with `responseType: 'arraybuffer'` the gateway's 401 is still read).
   * Rejects with the {@link WxFailError} on a network failure, or with the
   * login's error when logging in (first, or as the renewal's fallback) fails.
   */
  request<T = any>(options: RequestOptions): Promise<WxResponse<T>>;

  /**
   * `POST /wx/logout` (with `{ all: true }`: revoke every session of the
   * user). A login or renewal under way finishes first, so that what it
   * stored is revoked; one begun later stores nothing (`logged_out`). The
   * stored tokens are removed before the request, whatever happens. A token
   * that ran out is replaced with the refresh token, only to revoke its
   * session: logout never logs in.
   *
   * Resolves with the answer, whatever its status (`data` is
   * `{ revoked: 'token' | 'all' }` on 200), or with `null` without a request
   * when there is no token. Rejects like {@link request} on a network failure,
   * after the tokens have been removed: the gateway may then still hold the
   * session until it expires.
   */
  logout(options?: { all?: boolean }): Promise<WxResponse<{ revoked: 'token' | 'all' }> | null>;
  /**
   * `POST /wx/logout` with `{ others: true }`: end every other session of
   * the user in this app ("sign out my other devices"). This session and its
   * stored tokens go on. Authenticated and renewed like {@link request};
   * resolves with the answer (`{ revoked: 'others' }` on 200).
   */
  logout(options: { others: true }): Promise<WxResponse<{ revoked: 'others' }>>;

  /**
   * `GET /wx/sessions`: the user's live sessions in this app, oldest first,
   * this client's marked `current`. Rejects with a {@link WxGateError} on
   * any answer but 200.
   */
  sessions(): Promise<SessionInfo[]>;

  /**
   * `DELETE /wx/sessions/{id}`: end one of the user's sessions (its tokens
   * are refused at once). Rejects with a {@link WxGateError}
   * `session_not_found` (404) for an id that is not one of the user's live
   * sessions.
   */
  endSession(id: string): Promise<{ ended: string }>;

  /**
   * `POST /wx/phone` with the code of `<button open-type="getPhoneNumber">`,
   * authenticated and renewed like {@link request}. Rejects with a
   * {@link WxGateError} on any answer but 200 (e.g. `invalid_phone_code`),
   * and with `invalid_response` for a 200 that is not a phone number.
   */
  phoneNumber(code: string): Promise<PhoneNumber>;

  /**
   * `wx.connectSocket` with `Authorization: Bearer <token>`, logging in or
   * renewing first when needed. Resolves with the SocketTask.
   *
   * The gateway may close the socket with code {@link TOKEN_CLOSE_CODE}
   * (4001) and reason `token_expired` or `token_revoked` when the route sets
   * `close_on_token_expiry`: reconnect by calling `connectSocket` again (after
   * `login()` for `token_revoked`). A handshake the gateway refuses (401)
   * shows up only as the SocketTask's error/close; the client cannot see it.
   */
  connectSocket<Task = any>(options: ConnectSocketOptions): Promise<Task>;

  /** The stored access token, or `null`. */
  token(): string | null;
}

/**
 * Create a client. Create one per gateway (e.g. in `app.js`) and share it:
 * the single in-flight login and renewal are per client.
 *
 * @throws TypeError without `baseURL`, or without a `wx` object.
 */
export declare function createClient(options: ClientOptions): WxGateClient;
