// Command wxidp-bench is a closed-loop load generator for a running wxidp
// server (issue 11). Each of --concurrency workers sends its next request as
// soon as the previous one is answered, for --warmup (not counted) and then
// --duration; with --runs above one the scenarios are run that many times,
// interleaved, and the median is reported too.
//
// Scenarios: client_credentials; wechat-code (a returning mini-program
// user's login with openid offline_access: access, ID and refresh token);
// refresh (one rotating refresh chain per worker); authcode (redeeming codes
// minted beforehand through the real scan-to-login flow); introspection (a
// resource server asking about a user's valid access token); jwks; userinfo.
//
// The bench registers its own clients through the admin API under ids unique
// to the invocation and deletes them at the end. WeChat is a wechatfake
// served by the bench itself (--wechat-listen); the bench mints each wx.login
// code in process before the request that uses it. The server must be
// started with WXIDP_WECHAT_API_BASE pointing there and with its rate limits
// off, or the limits are what gets measured.
//
// Each scenario reports requests, throughput, p50/p90/p99/max latency (per
// worker log-linear histograms merged at the end, within 0.8%), errors by
// class (any non-2xx is one; the first body is printed), the server's CPU
// seconds per 1,000 requests and RSS (from its own /metrics on the admin
// listener), the bench's own CPU per 1,000 requests (it shares the machine),
// and the ratio of throughput to S: the RSA-2048 PKCS#1 v1.5 signatures per
// second of the fastest signer keys.Signers offers this build, measured on
// all cores in the same run. See docs/BENCHMARKS.md.
package main
