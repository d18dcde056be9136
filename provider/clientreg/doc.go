// Package clientreg is the client registry: the rules behind the admin API's
// /admin/clients and the clients CLI. It validates client metadata (RFC 7591
// names), redirect URIs and CORS origins, generates and hashes client
// secrets, and seals WeChat app secrets before storing a client.
//
// The token endpoint needs only one piece of it: SecretHasher, which package
// cmd/wxidp hands to package provider as a fosite.Hasher. Nothing here
// imports provider; the grant types it accepts come from provider/grants.
// A new client field, or the redirect-URI rules of a new flow, go here.
package clientreg
