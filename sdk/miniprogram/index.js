// wxidp's mini-program SDK: login with the WeChat-code grant, token storage,
// single-flight refresh, authenticated requests, the session_key vault, the
// user's profile and account deletion, and the scan-to-login calls. No
// runtime dependencies: it needs only the `wx` object of the mini-program
// (or one that behaves like it).

export const WECHAT_CODE_GRANT = 'urn:wxidp:params:oauth:grant-type:wechat-code';

// Refresh this long before the access token expires, so a request never
// leaves with a token that dies on the way.
const EXPIRY_MARGIN_MS = 30 * 1000;

/** An answer of wxidp that is not a success: status, OAuth error, description. */
export class WxidpError extends Error {
  constructor(status, error, description) {
    super(description ? `${error}: ${description}` : `${error} (HTTP ${status})`);
    this.name = 'WxidpError';
    this.status = status;
    this.error = error;
    this.description = description || '';
  }
}

function form(fields) {
  return Object.keys(fields)
    .filter((k) => fields[k] !== undefined && fields[k] !== null && fields[k] !== '')
    .map((k) => `${encodeURIComponent(k)}=${encodeURIComponent(fields[k])}`)
    .join('&');
}

function headerOf(res, name) {
  const h = res.header || {};
  const key = Object.keys(h).find((k) => k.toLowerCase() === name);
  return key ? String(h[key]) : '';
}

function failure(res) {
  const d = res.data && typeof res.data === 'object' ? res.data : {};
  return new WxidpError(res.statusCode, d.error || 'http_error', d.error_description);
}

// Refreshes in flight by storage key, shared by every client of this module
// that stores its tokens there (two pages' clients must not both spend the
// same single-use refresh token: the second use would end the login).
const inFlight = new Map();

/**
 * createClient returns a wxidp client for one mini-program.
 * options: issuer (wxidp's URL), clientId, scope (default "openid offline_access"),
 * wx (default the global wx), storageKey (default "wxidp.tokens"), now (clock, ms).
 */
export function createClient(options) {
  const { issuer, clientId } = options;
  if (!issuer || !clientId) throw new TypeError('createClient needs issuer and clientId');
  const wx = options.wx || globalThis.wx;
  const defaultScope = options.scope || 'openid offline_access';
  const now = options.now || (() => Date.now());
  const base = issuer.replace(/\/+$/, '');
  // One key per issuer and client: a staging and a production wxidp, or two
  // mini-program clients, never read each other's tokens.
  const storageKey = options.storageKey || `wxidp.tokens:${clientId}@${base}`;
  // Bumped by login, logout and deleteAccount: a refresh that started
  // before does not store its answer over theirs.
  let generation = 0;

  function send({ path, url, method = 'GET', data, header = {} }) {
    return new Promise((resolve, reject) => {
      wx.request({
        url: url || base + path,
        method,
        data,
        header,
        dataType: 'json',
        success: resolve,
        fail: (err) => reject(new WxidpError(0, 'network_error', (err && err.errMsg) || 'request failed')),
      });
    });
  }

  function wxLogin() {
    return new Promise((resolve, reject) => {
      wx.login({
        success: (r) => (r && r.code ? resolve(r.code) : reject(new WxidpError(0, 'wx_login_failed', 'wx.login gave no code'))),
        fail: (err) => reject(new WxidpError(0, 'wx_login_failed', (err && err.errMsg) || 'wx.login failed')),
      });
    });
  }

  function load() {
    const t = wx.getStorageSync(storageKey);
    return t && typeof t === 'object' ? t : null;
  }

  // save stores a token answer; a refresh keeps what it does not renew (the
  // ID token), a login replaces everything.
  function save(body, merge) {
    const prev = (merge && load()) || {};
    const t = {
      accessToken: body.access_token,
      refreshToken: body.refresh_token || prev.refreshToken || '',
      idToken: body.id_token || prev.idToken || '',
      expiresAt: now() + (Number(body.expires_in) || 0) * 1000,
      scope: body.scope || prev.scope || '',
    };
    wx.setStorageSync(storageKey, t);
    return t;
  }

  function clear() {
    wx.removeStorageSync(storageKey);
  }

  async function token(fields) {
    const res = await send({
      path: '/oauth2/token',
      method: 'POST',
      data: form({ client_id: clientId, ...fields }),
      header: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    if (res.statusCode !== 200) throw failure(res);
    return res.data;
  }

  /** login runs wx.login() and trades its code for tokens. */
  async function login({ scope } = {}) {
    generation++;
    const code = await wxLogin();
    const body = await token({ grant_type: WECHAT_CODE_GRANT, code, scope: scope || defaultScope });
    generation++;
    return save(body, false);
  }

  // refresh rotates the refresh token; concurrent callers share one
  // request, since a refresh token is single use (a second use would be
  // reuse, which ends the login).
  function refresh() {
    let p = inFlight.get(storageKey);
    if (!p) {
      const gen = generation;
      p = (async () => {
        const t = load();
        if (!t || !t.refreshToken) throw new WxidpError(401, 'login_required', 'No refresh token: call login().');
        let body;
        try {
          body = await token({ grant_type: 'refresh_token', refresh_token: t.refreshToken });
        } catch (e) {
          if (e.status === 400 && e.error === 'invalid_grant' && gen === generation) clear();
          throw e;
        }
        if (gen !== generation) {
          // A login or logout happened meanwhile: theirs stands.
          const cur = load();
          if (!cur) throw new WxidpError(401, 'login_required', 'Logged out: call login().');
          return cur;
        }
        return save(body, true);
      })().finally(() => inFlight.delete(storageKey));
      inFlight.set(storageKey, p);
    }
    return p;
  }

  /** getAccessToken returns a valid access token, refreshing it when due. */
  async function getAccessToken() {
    const pending = inFlight.get(storageKey);
    if (pending) return (await pending).accessToken;
    const t = load();
    if (t && t.accessToken && t.expiresAt - EXPIRY_MARGIN_MS > now()) return t.accessToken;
    return (await refresh()).accessToken;
  }

  function invalidToken(res) {
    return res.statusCode === 401 && (/invalid_token/.test(headerOf(res, 'www-authenticate')) ||
      (res.data && res.data.error === 'invalid_token'));
  }

  /**
   * request is wx.request with the bearer token; after a 401 invalid_token
   * it refreshes once and retries once. It resolves with wx.request's result.
   */
  async function request(opts) {
    const attempt = async (tok) => send({ ...opts, header: { ...(opts.header || {}), Authorization: `Bearer ${tok}` } });
    const used = await getAccessToken();
    const res = await attempt(used);
    if (!invalidToken(res)) return res;
    const current = load();
    // Another caller may have refreshed meanwhile: use its token.
    const fresh = current && current.accessToken !== used ? current.accessToken : (await refresh()).accessToken;
    return attempt(fresh);
  }

  function ok(res) {
    if (res.statusCode < 200 || res.statusCode > 299) throw failure(res);
    return res.data;
  }

  async function api(path, fields, method = 'POST') {
    return ok(await request({
      path,
      method,
      data: fields ? form(fields) : undefined,
      header: fields ? { 'content-type': 'application/x-www-form-urlencoded' } : {},
    }));
  }

  /**
   * updateProfile changes the user's nickname and picture (scope profile):
   * a field left undefined is not sent, null keeps the value, "" clears it.
   * It resolves with the profile claims (sub, nickname, picture, updated_at).
   */
  async function updateProfile({ nickname, picture } = {}) {
    const body = {};
    if (nickname !== undefined) body.nickname = nickname;
    if (picture !== undefined) body.picture = picture;
    return ok(await request({
      path: '/account',
      method: 'PATCH',
      data: JSON.stringify(body),
      header: { 'content-type': 'application/json' },
    }));
  }

  // loginTooOld is RFC 9470's answer to a token whose login is older than
  // the server allows for the call.
  function loginTooOld(res) {
    return res.statusCode === 401 && (/insufficient_user_authentication/.test(headerOf(res, 'www-authenticate')) ||
      (res.data && res.data.error === 'insufficient_user_authentication'));
  }

  /**
   * deleteAccount erases the user's account at wxidp. It needs a login of
   * the last 10 minutes: after an older one it logs in again (wx.login, with
   * the stored login's scope) once and retries once. Then it forgets the
   * tokens, which no longer exist; the next login() is a new user.
   */
  async function deleteAccount() {
    const erase = () => request({ path: '/account', method: 'DELETE' });
    let res = await erase();
    if (loginTooOld(res)) {
      const t = load();
      await login({ scope: (t && t.scope) || undefined });
      res = await erase();
    }
    ok(res);
    // A refresh in flight must not store tokens of the erased user.
    generation++;
    clear();
  }

  /** logout revokes the login at wxidp (the whole chain) and forgets it. */
  async function logout() {
    generation++;
    const t = load();
    clear();
    if (!t) return;
    const res = await send({
      path: '/oauth2/revoke',
      method: 'POST',
      data: form({ client_id: clientId, token: t.refreshToken || t.accessToken }),
      header: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    if (res.statusCode !== 200) throw failure(res);
  }

  return {
    login,
    logout,
    getAccessToken,
    request,
    updateProfile,
    deleteAccount,
    /** decrypt opens encryptedData with the user's session_key (scope wechat_data). */
    decrypt: ({ encryptedData, iv }) => api('/wechat/decrypt', { encryptedData, iv }),
    /** verifySignature checks wx.getUserInfo's rawData signature. */
    verifySignature: ({ rawData, signature }) => api('/wechat/verify-signature', { rawData, signature }).then((d) => d.valid === true),
    /** refreshSession renews the stored session_key after session_key_expired. */
    refreshSession: async () => {
      const code = await wxLogin();
      await api('/wechat/session', { code });
    },
    /** The scan-to-login calls, for the page the QR code opens. */
    ticket: (id) => api(`/login/tickets/${encodeURIComponent(id)}`, null, 'GET'),
    scan: (id) => api(`/login/tickets/${encodeURIComponent(id)}/scan`, {}),
    approve: (id) => api(`/login/tickets/${encodeURIComponent(id)}/approve`, {}),
    deny: (id) => api(`/login/tickets/${encodeURIComponent(id)}/deny`, {}),
    tokens: load,
  };
}
