"""wxidp access tokens in a Flask resource server, offline: RS256 signature by a
key of the JWKS, typ at+jwt (RFC 9068), iss, aud, exp, and a required scope.
Usage: @app.get("/hello") @require_scope("read") def hello(): ... (g.auth holds the claims)"""
from functools import wraps

import jwt
from flask import g, request


def wxidp_auth(issuer, audience):
    # Refetched for an unknown kid: wxidp publishes a key before it signs with it.
    jwks = jwt.PyJWKClient(issuer.rstrip("/") + "/.well-known/jwks.json")

    def require_scope(scope):
        def decorator(view):
            @wraps(view)
            def wrapper(*args, **kwargs):
                auth = request.headers.get("Authorization", "")
                try:
                    token = auth[7:] if auth[:7].lower() == "bearer " else ""
                    if jwt.get_unverified_header(token).get("typ", "").lower() != "at+jwt":
                        raise jwt.InvalidTokenError("not an access token")
                    key = jwks.get_signing_key_from_jwt(token).key
                    g.auth = jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=issuer,
                                        options={"require": ["exp", "iss", "aud", "sub"]})
                except jwt.PyJWTError:
                    return "", 401, {"WWW-Authenticate": 'Bearer error="invalid_token"'}
                if scope and scope not in g.auth.get("scope", "").split():
                    return "", 403, {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}
                return view(*args, **kwargs)
            return wrapper
        return decorator
    return require_scope
