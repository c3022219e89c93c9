"""A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it."""
from flask import Flask, abort, request

app = Flask(__name__)


@app.get("/api/me")
def me():
    openid = request.headers.get("X-OpenID")
    if not openid:
        abort(401)
    return {"openid": openid, "unionid": request.headers.get("X-UnionID")}


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=9000)
