// An Express-style middleware that accepts wxidp access tokens offline:
// RS256 signature by a key of the JWKS, typ at+jwt (RFC 9068), iss, aud,
// exp, and a required scope. Usage: app.get('/hello', requireScope('read'), handler)
import { createRemoteJWKSet, jwtVerify } from 'jose';

export function wxidpAuth({ issuer, audience }) {
  // Fetched on first use and again for an unknown kid: wxidp publishes a
  // key before it signs with it, so rotations need no restart.
  const jwks = createRemoteJWKSet(new URL(`${issuer.replace(/\/+$/, '')}/.well-known/jwks.json`));
  return function requireScope(scope) {
    return async function (req, res, next) {
      const m = /^Bearer (\S+)$/i.exec(req.headers.authorization || '');
      try {
        if (!m) throw new Error('no bearer token');
        const { payload } = await jwtVerify(m[1], jwks, { issuer, audience, typ: 'at+jwt', algorithms: ['RS256'] });
        if (scope && !String(payload.scope || '').split(' ').includes(scope)) {
          res.writeHead(403, { 'WWW-Authenticate': `Bearer error="insufficient_scope", scope="${scope}"` }).end();
          return;
        }
        req.auth = payload;
      } catch {
        res.writeHead(401, { 'WWW-Authenticate': 'Bearer error="invalid_token"' }).end();
        return;
      }
      next();
    };
  };
}
