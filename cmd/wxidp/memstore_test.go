package main

import (
	"testing"

	"github.com/wxidp/wxidp/provider/wechat/wechattest"
)

// memoryConfig is testConfig on the memory store, for tests of the web
// layer that need nothing PostgreSQL does (bad input, rate limits): they
// then skip creating and migrating a database of their own.
func memoryConfig() serveConfig {
	cfg := testConfig("")
	cfg.memoryStore = true
	return cfg
}

// newMemoryWeChatEnv is newWeChatEnv on the memory store; the env has no
// pool or DSN.
func newMemoryWeChatEnv(t *testing.T, mutate ...func(*serveConfig)) *wechatEnv {
	t.Helper()
	wx := wechattest.NewServer(t)
	cfg := memoryConfig()
	cfg.WeChatAPIBase = wx.URL
	for _, m := range mutate {
		m(&cfg)
	}
	return &wechatEnv{server: startServer(t, cfg), wx: wx}
}
