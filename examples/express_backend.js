// A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it.
const crypto = require('crypto');
const express = require('express');
const app = express();
const HOOK_SECRET = process.env.WXGATE_HOOK_SECRET || ''; // [login.hook] secret
const AUDIT_SECRET = process.env.WXGATE_AUDIT_SECRET || ''; // [audit.webhook] secret
const JWKS_URL = process.env.WXGATE_JWKS_URL; // with [assertion]: http://<wxgate>/.well-known/jwks.json
let jwks = [], jwksAt = 0;

async function cameThroughWxgate(req, route) { // X-WXGate-Assertion, checked with node's crypto
  if (!JWKS_URL) return true;
  try {
    const [h, p, s] = (req.get('X-WXGate-Assertion') || '').split('.');
    const head = JSON.parse(Buffer.from(h, 'base64url')), c = JSON.parse(Buffer.from(p, 'base64url'));
    if (!jwks.some(k => k.kid === head.kid) && Date.now() - jwksAt > 60000) { // a new key: once a minute at most
      jwks = (await (await fetch(JWKS_URL)).json()).keys; jwksAt = Date.now();
    }
    const jwk = jwks.find(k => k.kid === head.kid); // its alg, never the token's
    const key = { key: crypto.createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' };
    const ok = crypto.verify(jwk.alg === 'ES256' ? 'sha256' : null, Buffer.from(h + '.' + p), key,
                             Buffer.from(s, 'base64url'));
    return ok && head.typ === 'wxgate-assertion+jwt' && c.aud === route && c.exp > Date.now() / 1000
      && c.htm === req.method && decodeURI(c.htu) === decodeURI(req.path) && c.rid === req.get('X-Request-ID');
  } catch { return false; }
}

app.get('/api/me', async (req, res) => {
  const openid = req.get('X-OpenID');
  if (!openid) return res.status(401).end(); // a public or optional route without a token
  if (!(await cameThroughWxgate(req, '/api/'))) return res.status(401).end(); // the route's prefix
  res.json({ openid, unionid: req.get('X-UnionID') || null,
             uid: req.get('X-User-ID') || null, roles: req.get('X-User-Roles') || null });
});

function signedByWxgate(req, secret) { // req.body is the raw body (express.raw)
  const ts = req.get('X-WXGate-Timestamp') || '';
  const mac = crypto.createHmac('sha256', secret).update(ts + '.').update(req.body).digest('hex');
  const got = Buffer.from(req.get('X-WXGate-Signature') || ''), want = Buffer.from('sha256=' + mac);
  const fresh = /^\d+$/.test(ts) && Math.abs(Date.now() / 1000 - Number(ts)) < 300;
  return fresh && got.length === want.length && crypto.timingSafeEqual(got, want);
}

// The [login.hook] url: wxgate calls it before issuing a token.
app.post('/internal/wxgate', express.raw({ type: '*/*' }), (req, res) => {
  if (!HOOK_SECRET || !signedByWxgate(req, HOOK_SECRET)) return res.status(401).end();
  const event = JSON.parse(req.body); // {event: 'login' | 'refresh' | 'phone', appid, openid, unionid}
  if (event.event === 'phone') return res.json({}); // save event.phone.phoneNumber for event.openid
  // Find or create your user here; answer 403 {message: '...'} to refuse a login.
  res.json({ uid: 'u-' + event.openid.slice(-8), roles: ['user'] });
});

// The [audit.webhook] url: wxgate's audit events.
app.post('/internal/wxgate/audit', express.raw({ type: '*/*', limit: '1mb' }), (req, res) => {
  if (!AUDIT_SECRET || !signedByWxgate(req, AUDIT_SECRET)) return res.status(401).end();
  for (const event of JSON.parse(req.body).events) { // {id, time_ms, event, user, ...}
    console.log('wxgate audit:', JSON.stringify(event)); // keep them; a retried delivery repeats an id
  }
  res.status(204).end();
});

// Reachable only by wxgate: localhost, or a private network (HOST=0.0.0.0 in a container).
app.listen(Number(process.env.PORT || 9000), process.env.HOST || '127.0.0.1');
