#!/usr/bin/env python3
"""Verify wxgate tokens the way a backend would, with PyJWT and the gateway's
/.well-known/jwks.json: an independent check of what the gateway publishes
and signs (tests/keys.rs runs it).

Reads JSON on stdin: {"jwks": {...}, "issuer": "...", "audience": "...",
"tokens": ["...", ...]} and prints one line per token, "ok <sub> <kid>" or
"refused <reason>".
"""
import json
import sys

import jwt


def verify(token, keys, issuer, audience):
    kid = jwt.get_unverified_header(token).get("kid")
    jwk = keys.get(kid)
    if jwk is None:
        raise jwt.InvalidTokenError(f"no key {kid!r} in the key set")
    # The algorithm comes from the key set, never from the token.
    key = jwt.PyJWK(jwk).key
    claims = jwt.decode(
        token, key, algorithms=[jwk["alg"]], audience=audience, issuer=issuer
    )
    return f"ok {claims['sub']} {kid}"


def main():
    req = json.load(sys.stdin)
    keys = {k["kid"]: k for k in req["jwks"]["keys"]}
    for token in req["tokens"]:
        try:
            print(verify(token, keys, req["issuer"], req["audience"]))
        except jwt.InvalidTokenError as e:
            print(f"refused {type(e).__name__}")


if __name__ == "__main__":
    main()
