"""A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it."""
import hashlib
import hmac
import os
import time

from flask import Flask, abort, request

app = Flask(__name__)
HOOK_SECRET = os.environ.get("WXGATE_HOOK_SECRET", "").encode()  # [login.hook] secret
AUDIT_SECRET = os.environ.get("WXGATE_AUDIT_SECRET", "").encode()  # [audit.webhook] secret
JWKS_URL = os.environ.get("WXGATE_JWKS_URL")  # with [assertion]: http://<wxgate>/.well-known/jwks.json
jwks, jwks_at = {}, 0.0


def came_through_wxgate(req, route):  # X-WXGate-Assertion, checked with PyJWT (pip install pyjwt[crypto])
    global jwks, jwks_at
    if not JWKS_URL:
        return True
    import json, urllib.parse, urllib.request, jwt
    try:
        token = req.headers.get("X-WXGate-Assertion", "")
        head = jwt.get_unverified_header(token)
        if head.get("kid") not in jwks and time.time() - jwks_at > 60:  # a new key: fetch, once a minute at most
            with urllib.request.urlopen(JWKS_URL, timeout=5) as r:
                jwks, jwks_at = {k["kid"]: k for k in json.load(r)["keys"]}, time.time()
        jwk = jwks[head["kid"]]  # its alg, never the token's
        c = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], audience=route)
        return head.get("typ") == "wxgate-assertion+jwt" and (c["htm"], urllib.parse.unquote(c["htu"]),
            c["rid"]) == (req.method, req.path, req.headers.get("X-Request-ID"))
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, OSError):
        return False


@app.get("/api/me")
def me():
    openid = request.headers.get("X-OpenID")
    if not openid:  # a public or optional route without a token
        abort(401)
    if not came_through_wxgate(request, "/api/"):  # the route's prefix
        abort(401)
    return {"openid": openid, "unionid": request.headers.get("X-UnionID"),
            "uid": request.headers.get("X-User-ID"), "roles": request.headers.get("X-User-Roles")}


def signed_by_wxgate(req, secret):
    ts = req.headers.get("X-WXGate-Timestamp", "")
    mac = hmac.new(secret, ts.encode() + b"." + req.get_data(), hashlib.sha256).hexdigest()
    fresh = ts.isdigit() and abs(time.time() - int(ts)) < 300
    return fresh and hmac.compare_digest(req.headers.get("X-WXGate-Signature", ""), "sha256=" + mac)


@app.post("/internal/wxgate")  # the [login.hook] url: wxgate calls it before issuing a token
def login_hook():
    if not HOOK_SECRET or not signed_by_wxgate(request, HOOK_SECRET):
        abort(401)
    event = request.get_json()  # {"event": "login" | "refresh" | "phone", "appid", "openid", "unionid"}
    if event["event"] == "phone":
        return {}  # save event["phone"]["phoneNumber"] for event["openid"]
    # Find or create your user here; answer 403 {"message": "..."} to refuse a login.
    return {"uid": "u-" + event["openid"][-8:], "roles": ["user"]}


@app.post("/internal/wxgate/audit")  # the [audit.webhook] url: wxgate's audit events
def audit_webhook():
    if not AUDIT_SECRET or not signed_by_wxgate(request, AUDIT_SECRET):
        abort(401)
    for event in request.get_json()["events"]:  # {"id", "time_ms", "event", "user", ...}
        app.logger.info("wxgate audit: %s", event)  # keep them; a retried delivery repeats an "id"
    return "", 204


if __name__ == "__main__":
    # Reachable only by wxgate: localhost, or a private network (HOST=0.0.0.0 in a container).
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "9000")))
