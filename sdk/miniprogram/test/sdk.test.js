// The SDK against a real wxidp and the fake WeChat. Run by the Go test
// TestMiniprogramSDK (cmd/wxidp), which starts both and sets:
// WXIDP_ISSUER, WXIDP_FAKE_WECHAT, WXIDP_APPID, WXIDP_CLIENT_ID, WXIDP_TICKETS
// and WXIDP_OLD_LOGIN (a token answer of a login 11 minutes old, with its
// openid and expires_at in ms).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { createClient, WxidpError, WECHAT_CODE_GRANT } from '../index.js';

const issuer = process.env.WXIDP_ISSUER;
const fake = process.env.WXIDP_FAKE_WECHAT;
const appid = process.env.WXIDP_APPID;
const clientId = process.env.WXIDP_CLIENT_ID;
const tickets = (process.env.WXIDP_TICKETS || '').split(',').filter(Boolean);
const oldLogin = process.env.WXIDP_OLD_LOGIN ? JSON.parse(process.env.WXIDP_OLD_LOGIN) : null;
if (!issuer || !fake || !appid || !clientId || tickets.length < 2 || !oldLogin) {
  throw new Error('run through the Go test TestMiniprogramSDK: WXIDP_ISSUER, WXIDP_FAKE_WECHAT, WXIDP_APPID, WXIDP_CLIENT_ID, WXIDP_TICKETS (two) and WXIDP_OLD_LOGIN are unset');
}

async function fakeCall(path, body) {
  const r = await fetch(fake + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

// simulatedWx behaves like the mini-program's wx: login() gets a code from
// the fake WeChat, request() goes over HTTP, storage is in memory. It
// counts the token requests by grant type and keeps what each request sent.
function simulatedWx(openid) {
  const storage = new Map();
  const grants = {};
  const sent = [];
  return {
    grants,
    storage,
    sent,
    login({ success, fail }) {
      fakeCall('/_fake/login', { appid, openid }).then((j) => success({ code: j.code, errMsg: 'login:ok' }), fail);
    },
    request({ url, method = 'GET', data, header = {}, success, fail }) {
      sent.push({ url, method, data, header });
      if (url.endsWith('/oauth2/token') && typeof data === 'string') {
        const g = new URLSearchParams(data).get('grant_type');
        grants[g] = (grants[g] || 0) + 1;
      }
      fetch(url, { method, headers: header, body: method === 'GET' ? undefined : data })
        .then(async (r) => {
          const text = await r.text();
          let body = text;
          try { body = JSON.parse(text); } catch { /* not JSON */ }
          success({ statusCode: r.status, data: body, header: Object.fromEntries(r.headers) });
        }, (e) => fail({ errMsg: `request:fail ${e.message}` }));
    },
    setStorageSync(k, v) { storage.set(k, structuredClone(v)); },
    getStorageSync(k) { return storage.has(k) ? structuredClone(storage.get(k)) : ''; },
    removeStorageSync(k) { storage.delete(k); },
  };
}

// The SDK's default storage key for this issuer and client.
const key = `wxidp.tokens:${clientId}@${issuer.replace(/\/+$/, '')}`;

// subOf reads the sub of an access token (a JWT; its signature is the
// server's business).
function subOf(accessToken) {
  return JSON.parse(Buffer.from(accessToken.split('.')[1], 'base64url').toString()).sub;
}

function client(openid, scope = 'openid offline_access wechat_data', wx = simulatedWx(openid)) {
  return { wx, c: createClient({ issuer, clientId, wx, scope }) };
}

test('login stores tokens and request() carries the bearer token', async () => {
  const { c } = client('o-sdk-login');
  const t = await c.login();
  assert.ok(t.accessToken && t.refreshToken && t.idToken);
  assert.ok(t.expiresAt > Date.now());
  const res = await c.request({ path: '/userinfo' });
  assert.equal(res.statusCode, 200);
  assert.ok(res.data.sub);
});

test('20 concurrent callers of an expired token share one refresh', async () => {
  const { wx, c } = client('o-sdk-flight');
  const first = await c.login();
  wx.setStorageSync(key, { ...first, expiresAt: 0 });
  const tokens = await Promise.all(Array.from({ length: 20 }, () => c.getAccessToken()));
  assert.equal(wx.grants.refresh_token, 1, 'one refresh request');
  assert.equal(new Set(tokens).size, 1, 'every caller got the same new token');
  assert.notEqual(tokens[0], first.accessToken);
  assert.notEqual(c.tokens().refreshToken, first.refreshToken, 'the refresh token rotated');
  const res = await c.request({ path: '/userinfo' });
  assert.equal(res.statusCode, 200);
});

test('two clients sharing storage (two pages) still refresh once', async () => {
  const { wx, c } = client('o-sdk-pages');
  const first = await c.login();
  const { c: c2 } = client('o-sdk-pages', undefined, wx);
  wx.setStorageSync(key, { ...first, expiresAt: 0 });
  const tokens = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? c : c2).getAccessToken()));
  assert.equal(wx.grants.refresh_token, 1);
  assert.equal(new Set(tokens).size, 1);
});

test('a login replaces everything; a logout during a refresh stays a logout', async () => {
  const { wx, c } = client('o-sdk-relogin');
  const first = await c.login();
  const second = await c.login({ scope: 'openid' });
  assert.equal(second.refreshToken, '', 'no refresh token of the earlier login is kept');
  assert.notEqual(second.accessToken, first.accessToken);
  await c.login();
  wx.setStorageSync(key, { ...c.tokens(), expiresAt: 0 });
  const refreshing = c.getAccessToken().catch((e) => e);
  await c.logout();
  await refreshing;
  assert.equal(c.tokens(), null, 'the refresh answered after the logout stored nothing');
});

test('a 401 invalid_token is refreshed once and retried once', async () => {
  const { wx, c } = client('o-sdk-retry');
  const t = await c.login();
  // The server no longer accepts the stored access token (a key rotation
  // or revocation the client has not seen): its signature is damaged.
  wx.setStorageSync(key, { ...t, accessToken: t.accessToken.slice(0, -4) + 'AAAA' });
  const res = await c.request({ path: '/userinfo' });
  assert.equal(res.statusCode, 200);
  assert.equal(wx.grants.refresh_token, 1);
});

test('logout revokes the login', async () => {
  const { wx, c } = client('o-sdk-logout');
  const t = await c.login();
  await c.logout();
  assert.equal(c.tokens(), null);
  wx.setStorageSync(key, t); // a copy kept somewhere
  await assert.rejects(c.getAccessToken().then(() => c.request({ path: '/userinfo' })).then((r) => {
    if (r.statusCode !== 200) throw new WxidpError(r.statusCode, r.data.error, '');
  }), (e) => e instanceof WxidpError && (e.status === 401 || e.error === 'invalid_grant'));
});

function encrypt(sessionKey, doc) {
  const iv = randomBytes(16);
  const c = createCipheriv('aes-128-cbc', Buffer.from(sessionKey, 'base64'), iv);
  const data = Buffer.concat([c.update(JSON.stringify(doc)), c.final()]);
  return { encryptedData: data.toString('base64'), iv: iv.toString('base64') };
}

test('decrypt, verifySignature and refreshSession use the session_key vault', async () => {
  const openid = 'o-sdk-vault';
  const { c } = client(openid);
  await c.login();
  const { session_key: key } = await fakeCall('/_fake/sessionkey', { appid, openid });
  const doc = { stepInfoList: [{ timestamp: 1764547200, step: 4200 }], watermark: { appid, timestamp: 1764590000 } };
  assert.deepEqual(await c.decrypt(encrypt(key, doc)), doc);
  const rawData = '{"nickName":"SDK"}';
  const signature = createHash('sha1').update(rawData + key).digest('hex');
  assert.equal(await c.verifySignature({ rawData, signature }), true);

  // Another wx.login gives WeChat a new session_key: the vault says so,
  // and refreshSession() renews it.
  await fakeCall('/_fake/login', { appid, openid });
  const { session_key: newKey } = await fakeCall('/_fake/sessionkey', { appid, openid });
  await assert.rejects(c.decrypt(encrypt(newKey, doc)), (e) => e.status === 409 && e.error === 'session_key_expired');
  await c.refreshSession();
  const { session_key: renewed } = await fakeCall('/_fake/sessionkey', { appid, openid });
  assert.deepEqual(await c.decrypt(encrypt(renewed, doc)), doc);
});

test('scan-to-login: scan and approve one ticket, deny another', async () => {
  const { c } = client('o-sdk-scanner');
  await c.login();
  const [one, two] = tickets;
  assert.equal((await c.ticket(one)).state, 'waiting');
  assert.equal((await c.scan(one)).state, 'scanned');
  assert.equal((await c.approve(one)).state, 'approved');
  await c.scan(two);
  assert.equal((await c.deny(two)).state, 'denied');
  const { c: other } = client('o-sdk-other');
  await other.login();
  await assert.rejects(other.approve(one), (e) => e instanceof WxidpError && e.status === 409);
});

test('scan-to-login calls surface wxidp errors', async () => {
  const { c } = client('o-sdk-ticket');
  await c.login();
  await assert.rejects(c.ticket('no-such-ticket-0123456789abcdef0123'), (e) => e instanceof WxidpError && e.status === 404);
  await assert.rejects(c.approve('no-such-ticket-0123456789abcdef0123'), (e) => e instanceof WxidpError && e.status === 404);
});

test('a failed wx.login and an unknown client are errors, not hangs', async () => {
  const wx = simulatedWx('o-sdk-x');
  wx.login = ({ fail }) => fail({ errMsg: 'login:fail' });
  await assert.rejects(createClient({ issuer, clientId, wx }).login(), (e) => e.error === 'wx_login_failed');
  await assert.rejects(createClient({ issuer, clientId: 'nobody', wx: simulatedWx('o-sdk-y') }).login(),
    (e) => e instanceof WxidpError && e.status === 401);
});

test('updateProfile sends only the fields given, as JSON, and answers the profile claims', async () => {
  const { wx, c } = client('o-sdk-profile', 'openid offline_access profile');
  const { accessToken } = await c.login();
  const sub = subOf(accessToken);
  const pic = 'https://thirdwx.qlogo.cn/mmopen/vi_32/sdk/132';
  const set = await c.updateProfile({ nickname: '小程序 🌸', picture: pic });
  assert.equal(set.sub, sub);
  assert.equal(set.nickname, '小程序 🌸');
  assert.equal(set.picture, pic);
  assert.equal(typeof set.updated_at, 'number');
  const patch = wx.sent.at(-1);
  assert.equal(patch.method, 'PATCH');
  assert.ok(patch.url.endsWith('/account'));
  assert.equal(patch.header['content-type'], 'application/json');
  assert.match(patch.header.Authorization, /^Bearer /);
  assert.deepEqual(JSON.parse(patch.data), { nickname: '小程序 🌸', picture: pic });

  // null keeps the nickname, a left-out field is not sent.
  const pic2 = 'https://example.com/sdk-2.png';
  const moved = await c.updateProfile({ nickname: null, picture: pic2 });
  assert.equal(moved.nickname, '小程序 🌸');
  assert.equal(moved.picture, pic2);
  // "" clears the nickname; the picture is kept.
  const cleared = await c.updateProfile({ nickname: '' });
  assert.deepEqual(JSON.parse(wx.sent.at(-1).data), { nickname: '' });
  assert.equal(cleared.sub, sub);
  assert.equal(cleared.nickname, undefined);
  assert.equal(cleared.picture, pic2);
  const me = await c.request({ path: '/userinfo' });
  assert.equal(me.data.nickname, undefined);
  assert.equal(me.data.picture, pic2);

  await assert.rejects(c.updateProfile({ picture: 'http://example.com/not-https.png' }),
    (e) => e instanceof WxidpError && e.status === 400 && e.error === 'invalid_request');
});

test('updateProfile without scope profile is a 403 insufficient_scope', async () => {
  const { c } = client('o-sdk-noprofile', 'openid offline_access');
  await c.login();
  await assert.rejects(c.updateProfile({ nickname: 'x' }),
    (e) => e instanceof WxidpError && e.status === 403 && e.error === 'insufficient_scope');
});

test('deleteAccount right after a login erases the user; the next login is a new user', async () => {
  const { wx, c } = client('o-sdk-erase');
  const t = await c.login();
  const sub = subOf(t.accessToken);
  await c.deleteAccount();
  assert.equal(c.tokens(), null, 'the tokens are forgotten');
  assert.equal(wx.grants[WECHAT_CODE_GRANT], 1, 'a recent login needs no other');
  assert.ok(!wx.sent.some((r) => r.url.endsWith('/oauth2/revoke')), 'nothing revoked: the tokens no longer exist');
  // The erased user's token is no good any more.
  wx.setStorageSync(key, { ...t, refreshToken: '' });
  const res = await c.request({ path: '/userinfo' }).catch((e) => e);
  assert.ok(res instanceof WxidpError ? res.status === 401 : res.statusCode === 401, 'the old access token is refused');
  const again = await c.login();
  assert.notEqual(subOf(again.accessToken), sub, 'a new user');
});

test('a refresh started during deleteAccount does not bring the tokens back', async () => {
  const { wx, c } = client('o-sdk-erase-refresh');
  await c.login();
  // Another caller, whose token was due, starts a refresh while the
  // deletion is on its way; wxidp gets the refresh after the deletion.
  let deleted;
  const deletion = new Promise((r) => { deleted = r; });
  let deleteStatus;
  const request = wx.request;
  wx.request = (opts) => {
    if (opts.method === 'DELETE') {
      request({ ...opts, success: (res) => { deleteStatus = res.statusCode; opts.success(res); deleted(); } });
    } else if (opts.url.endsWith('/oauth2/token')) {
      deletion.then(() => request(opts));
    } else {
      request(opts);
    }
  };
  const deleting = c.deleteAccount();
  await new Promise((r) => setImmediate(r)); // the deletion has its token
  wx.setStorageSync(key, { ...c.tokens(), expiresAt: 0 });
  const refreshing = c.getAccessToken().catch((e) => e);
  await deleting;
  assert.equal(deleteStatus, 204);
  const refreshed = await refreshing;
  assert.ok(refreshed instanceof WxidpError && refreshed.status === 400 && refreshed.error === 'invalid_grant',
    `the refresh of an erased user: ${refreshed}`);
  assert.equal(wx.grants.refresh_token, 1);
  assert.equal(c.tokens(), null, 'nothing stored after the deletion');
});

test('deleteAccount after a login older than 10 minutes logs in again once and retries', async () => {
  const { openid } = oldLogin;
  // The client's own default scope differs from the stored login's: the
  // new login must ask for the stored one.
  const { wx, c } = client(openid, 'openid');
  wx.setStorageSync(key, {
    accessToken: oldLogin.access_token, refreshToken: oldLogin.refresh_token, idToken: oldLogin.id_token,
    expiresAt: oldLogin.expires_at, scope: oldLogin.scope,
  });
  const sub = subOf(oldLogin.access_token);
  const me = await c.request({ path: '/userinfo' });
  assert.equal(me.statusCode, 200, 'the old login is still valid');
  assert.equal(me.data.sub, sub);
  assert.equal(wx.grants.refresh_token, undefined, 'with its own access token');

  await c.deleteAccount();
  const deletes = wx.sent.filter((r) => r.method === 'DELETE' && r.url.endsWith('/account'));
  assert.equal(deletes.length, 2, 'refused once, retried once');
  assert.equal(wx.grants[WECHAT_CODE_GRANT], 1, 'one new login');
  const relogin = wx.sent.find((r) => r.url.endsWith('/oauth2/token'));
  assert.equal(new URLSearchParams(relogin.data).get('scope'), oldLogin.scope, "the stored login's scope");
  assert.notEqual(deletes[1].header.Authorization, deletes[0].header.Authorization, 'the retry used the new token');
  assert.equal(c.tokens(), null);

  const again = await c.login();
  assert.notEqual(subOf(again.accessToken), sub, 'the account is gone: the next login is a new user');
});
