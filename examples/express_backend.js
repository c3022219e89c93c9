// A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it.
const crypto = require('crypto');
const express = require('express');
const app = express();
const HOOK_SECRET = process.env.WXGATE_HOOK_SECRET || ''; // [login.hook] secret
const AUDIT_SECRET = process.env.WXGATE_AUDIT_SECRET || ''; // [audit.webhook] secret

app.get('/api/me', (req, res) => {
  const openid = req.get('X-OpenID');
  if (!openid) return res.status(401).end(); // a public or optional route without a token
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
