"""A backend written for WeChat Cloud Run, unchanged behind wxgate ([headers] cloud_run = true)."""
import os

from flask import Flask, abort, request

app = Flask(__name__)


@app.get("/api/whoami")
def whoami():
    openid = request.headers.get("X-WX-OPENID")  # set by Cloud Run there, by wxgate here
    if not openid:
        abort(401)
    return {"openid": openid, "appid": request.headers.get("X-WX-APPID"),
            "unionid": request.headers.get("X-WX-UNIONID"), "source": request.headers.get("X-WX-SOURCE")}


if __name__ == "__main__":
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=int(os.environ.get("PORT", "9000")))
