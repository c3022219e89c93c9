// A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it.
const express = require('express');
const app = express();

app.get('/api/me', (req, res) => {
  const openid = req.get('X-OpenID');
  if (!openid) return res.status(401).end();
  res.json({ openid, unionid: req.get('X-UnionID') || null });
});

app.listen(9000, '127.0.0.1');
