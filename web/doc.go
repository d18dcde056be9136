// Package web is wxidp's HTTP layer: two echo servers (public and admin),
// their routes, handlers and middleware (request ID, recovery, access log,
// security headers, body limits). It translates between HTTP and provider
// calls and holds no business rules. OAuth endpoints answer only through
// fosite's writers; every other route goes through one error handler with
// generic messages, so no response carries internals.
package web
