// Package grants names the OAuth 2.0 grant types wxidp serves. It is the one
// list that discovery (grant_types_supported), the token endpoint's
// composition (package provider) and client registration (package
// provider/clientreg) all read, so a new grant, such as authorization_code
// for scan-to-login, is added here once and neither side can forget it.
// It imports nothing, so every package may depend on it.
package grants
