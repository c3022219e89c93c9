// A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it.
const express = require('express');
const app = express();

app.get('/api/me', (req, res) => {
  const openid = req.get('X-OpenID');
  if (!openid) return res.status(401).end(); // a public or optional route without a token
  res.json({ openid, unionid: req.get('X-UnionID') || null });
});

// Reachable only by wxgate: localhost, or a private network (HOST=0.0.0.0 in a container).
app.listen(Number(process.env.PORT || 9000), process.env.HOST || '127.0.0.1');
