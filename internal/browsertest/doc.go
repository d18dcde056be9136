// Package browsertest drives a real headless Chromium from end-to-end tests,
// so a test sees what a user's browser sees: the Content-Security-Policy
// enforced, scripts run, cookies stored with their attributes, redirects
// followed, and the QR code as it is painted on the screen.
//
//	b := browsertest.New(t) // one Chromium for this test, stopped at cleanup
//	b.Navigate(srv.URL + "/login")
//	b.WaitVisible("#qr")
//	payload, err := browsertest.DecodeQR(b.Screenshot())
//	...
//	b.WaitLocationPrefix(rp.URL + "/callback")
//	if errs := b.ConsoleErrors(); len(errs) > 0 { t.Errorf("console: %q", errs) }
//
// The browser is the Debian package chromium at /usr/bin/chromium, or the
// binary $WXIDP_TEST_CHROMIUM names. A missing browser fails the test and
// never skips it: run scripts/ensure-chromium (CI does) or
// `apt-get install chromium`.
//
// Each test gets its own browser process and a fresh profile, so cookies and
// caches never leak between tests; starting one costs 1-2 s (more on a busy
// machine). The methods fail the test (t.Fatalf) on any error, so they must
// be called from the test's goroutine. Every call shares one deadline per
// browser: 60 s, or less when the test binary's -timeout is closer.
//
// Selectors are CSS selectors; a method that needs an element waits until the
// element exists (and, for WaitVisible and Click, is visible).
//
// The package name ends in "test": .ci/run fails when a binary links it.
package browsertest
