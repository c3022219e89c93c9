"""A backend behind wxgate: it trusts X-OpenID because only wxgate can reach it."""
import os

from flask import Flask, abort, request

app = Flask(__name__)


@app.get("/api/me")
def me():
    openid = request.headers.get("X-OpenID")
    if not openid:  # a public or optional route without a token
        abort(401)
    return {"openid": openid, "unionid": request.headers.get("X-UnionID")}


if __name__ == "__main__":
    # Reachable only by wxgate: localhost, or a private network (HOST=0.0.0.0 in a container).
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "9000")))
