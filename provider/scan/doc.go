// Package scan holds what scan-to-login needs apart from OAuth: login
// ticket identifiers and browser secrets, and the picture a login page
// shows for a ticket: a mini-program code from WeChat's
// wxacode.getUnlimited when the client's mini-program is configured, else
// a plain QR code of the issuer's /login/scan address. The ticket's state
// machine lives in storage (one conditional write per step) and its
// orchestration with the authorization endpoint in package provider.
package scan
