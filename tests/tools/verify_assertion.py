#!/usr/bin/env python3
"""Verify X-WXGate-Assertion the way a backend would, with PyJWT and the
gateway's /.well-known/jwks.json (tests/assertion.rs runs it).

Reads JSON on stdin: {"jwks": {...}, "issuer": "...", "cases": [{"assertion",
"aud", "htm", "htu", "rid", "now"}, ...]} and prints one line per case, "ok
<sub>" or "refused <reason>". "now" stands for the backend's clock (Unix
seconds), so that a test can check an assertion a minute later at once.
"""
import json
import sys

import jwt


def verify(case, keys, issuer):
    token = case["assertion"]
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "wxgate-assertion+jwt":
        raise jwt.InvalidTokenError("not an assertion")
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise jwt.InvalidTokenError("no such key")
    # The algorithm comes from the key set, never from the token.
    claims = jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=[jwk["alg"]],
        audience=case["aud"],
        issuer=issuer,
        options={"verify_exp": False, "verify_iat": False, "require": ["exp", "iat"]},
    )
    if claims["exp"] <= case["now"]:
        raise jwt.ExpiredSignatureError("expired")
    # Bound to this request: its method, path and request id.
    for claim, want in (("htm", case["htm"]), ("htu", case["htu"]), ("rid", case["rid"])):
        if claims.get(claim) != want:
            raise jwt.InvalidTokenError(f"{claim} is another request's")
    return f"ok {claims['sub']}"


def main():
    req = json.load(sys.stdin)
    keys = {k["kid"]: k for k in req["jwks"]["keys"]}
    for case in req["cases"]:
        try:
            print(verify(case, keys, req["issuer"]))
        except jwt.InvalidTokenError as e:
            print(f"refused {type(e).__name__}: {e}")


if __name__ == "__main__":
    main()
