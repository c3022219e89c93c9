# The login a typical backend team writes by hand (Flask, as in the tutorials):
# the baseline of bench/login.sh. Run: gunicorn -w 1 -b HOST:PORT flask_login:app
import os, time, uuid

import jwt, requests
from flask import Flask, jsonify, request

app = Flask(__name__)
WECHAT = os.environ["WECHAT_API_BASE"] + "/sns/jscode2session"
APPID, APP_SECRET, JWT_SECRET = os.environ["WX_APPID"], os.environ["WX_SECRET"], os.environ["JWT_SECRET"]
sessions = {}  # openid -> session_key, kept server-side

@app.post("/wx/login")
def login():
    code = (request.get_json(silent=True) or {}).get("code")
    if not code:
        return jsonify(error="missing code"), 400
    r = requests.get(WECHAT, params={"appid": APPID, "secret": APP_SECRET, "js_code": code,
                                     "grant_type": "authorization_code"}, timeout=3).json()
    if "openid" not in r:
        return jsonify(error="wechat", errcode=r.get("errcode")), 401
    sessions[r["openid"]] = r["session_key"]
    now = int(time.time())
    claims = {"sub": r["openid"], "iss": "wxgate", "aud": "bench", "iat": now, "exp": now + 7200, "jti": uuid.uuid4().hex}
    return jsonify(token=jwt.encode(claims, JWT_SECRET, algorithm="HS256"), expires_in=7200)
