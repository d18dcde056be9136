// The recipe running: node server.mjs ISSUER AUDIENCE ADDR SCOPE
import http from 'node:http';
import { wxidpAuth } from './auth.mjs';

const [issuer, audience, addr, scope] = process.argv.slice(2);
const requireScope = wxidpAuth({ issuer, audience });
const guard = requireScope(scope);
const [host, port] = addr.split(':');
http.createServer((req, res) => {
  if (req.method !== 'GET' || req.url !== '/hello') return res.writeHead(404).end();
  guard(req, res, () => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ hello: req.auth.sub, scope: req.auth.scope, client_id: req.auth.client_id }));
  });
}).listen(Number(port), host, () => console.log(`listening on ${addr}`));
