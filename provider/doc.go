// Package provider composes fosite into wxidp's OAuth2/OIDC engine. It knows
// nothing of HTTP routing; package web calls it and writes its answers
// through fosite's writers.
//
// One file per flow step, as in fosite's handler packages:
//
//   - provider.go: Config, Deps and New, the one place fosite is composed;
//   - token.go: the token endpoint; flow_client_credentials.go and
//     flow_wechat_code*.go: the rules of each grant fosite leaves to its user
//     (which scopes and audiences are granted, who the subject is);
//   - introspect.go, revoke.go, userinfo.go: the other endpoints;
//   - session.go, scopes.go: the session type and its claims;
//   - outage.go, throttle.go, refresh_reuse.go: what every endpoint shares
//     (storage outages as 503, rate limits, the refresh-reuse audit hook).
//
// Concerns with no need of fosite live in their own packages, which never
// import this one: provider/clientreg (client registry, metadata and
// redirect-URI validation, client-secret hashing), provider/apptoken (the
// shared WeChat access-token cache), provider/grants (the grant types served)
// and provider/wechat (the WeChat API client).
//
// Scan-to-login: the authorization endpoint and the authorization_code
// grant with PKCE are fosite's own handlers, composed in provider.go;
// authorize.go holds wxidp's rules for them (exact redirect_uri, S256 only,
// which scopes are granted, when a browser session may answer), login.go
// the ticket steps and the one-transaction completion, logout.go
// RP-initiated logout. provider/scan draws the QR picture (a mini-program
// code through provider/apptoken's token, or a plain QR code); the
// tickets' state machine is storage's (storage.LoginStore).
//
// The session-key vault (vault.go: decrypt, verify-signature, session
// refresh) and the self-service account (people.go: profile, deletion)
// answer bearer-token requests, not OAuth ones; the token is checked by
// bearer in userinfo.go, as UserInfo and BearerUser do. people.go also
// holds userGate, the token-endpoint handler that renews a refreshed ID
// token's user claims; lifetimes.go
// chainGate (a login's absolute lifetime, narrowed refreshes) and the
// wxrt_ refresh-token prefix.
package provider
