// Package provider composes fosite into wxidp's OAuth2/OIDC engine: the
// session and its claims, token lifetimes, client-secret hashing, and the
// grant-specific rules fosite leaves to its user (which scopes and audiences
// are granted). It knows nothing of HTTP routing; package web calls it and
// writes its answers through fosite's writers.
package provider
