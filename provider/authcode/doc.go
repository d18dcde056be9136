// Package authcode is the authorization code grant's handler: fosite's,
// which reads and checks the code and answers, with the code's
// invalidation and the new tokens written in one call to a store that can
// (Exchanger) instead of in a transaction of fosite's. A store that cannot,
// or a call that wrote nothing without refusing, takes fosite's
// transactional path. Under Defer the write is the Writer's, after the
// OpenID Connect handler signed the ID token, so that nothing fails after
// the code is used.
package authcode
