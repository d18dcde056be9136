// Package audit records the audit trail: admin actions (clients created,
// updated, deleted, secrets reset; signing keys rotated or revoked; stored
// secrets re-encrypted) and security events (refresh-token reuse and the
// chain it revoked, failed-authentication lockouts, WeChat risk refusals).
//
// A Recorder fills in the time, and the request ID and source address that
// the web layer put in the context (WithRequest), and appends the event to
// storage. Recording never fails the action it records: an event that
// cannot be stored is logged (without secrets) and the action carries on.
// It is synchronous, so an event is stored by the time the response is.
//
// Events never carry a secret: no token, code, client secret, session key
// or key material, in Details either.
package audit
