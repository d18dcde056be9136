"""The recipe running: python3 server.py ISSUER AUDIENCE ADDR SCOPE"""
import sys

from flask import Flask, g

from auth import wxidp_auth

issuer, audience, addr, scope = sys.argv[1:5]
require_scope = wxidp_auth(issuer, audience)
app = Flask(__name__)


@app.get("/hello")
@require_scope(scope)
def hello():
    return {"hello": g.auth["sub"], "scope": g.auth.get("scope", ""), "client_id": g.auth.get("client_id")}


if __name__ == "__main__":
    host, port = addr.rsplit(":", 1)
    app.run(host=host, port=int(port))
