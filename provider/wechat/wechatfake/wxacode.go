package wechatfake

import (
	"encoding/json"
	"image/color"
	"net/url"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"
)

// getwxacodeunlimit's documented limits.
const (
	maxSceneLen  = 32
	sceneChars   = "!#$&'()*+,/:;=?@-._~"
	minWidth     = 280
	maxWidth     = 1280
	defaultWidth = 430
	// maxWXACodes bounds what WXACodes remembers in a long dev session.
	maxWXACodes = 1000
)

// DefaultPages are the pages an app added by AddApp has published: the
// usual home page and the page wxidp's scan-to-login codes open.
func DefaultPages() []string { return []string{"pages/index/index", "pages/scan/index"} }

// WXACode is a mini-program code the fake drew, as the request asked for it
// (Width after defaulting and clamping).
type WXACode struct {
	AppID, Scene, Page, EnvVersion string
	Width                          int
}

// SetPublishedPages replaces the pages of appID's published version, which
// getwxacodeunlimit checks page against unless check_path is false. It does
// nothing for an app not added.
func (f *Fake) SetPublishedPages(appID string, pages ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a, ok := f.apps[appID]; ok {
		a.pages = pageSet(pages)
	}
}

// WXACodes returns the codes drawn so far, oldest first (the latest 1000).
// Calls(PathWXACode) counts every request, refused ones too.
func (f *Fake) WXACodes() []WXACode {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]WXACode(nil), f.wxaCodes...)
}

func pageSet(pages []string) map[string]bool {
	m := make(map[string]bool, len(pages))
	for _, p := range pages {
		m[p] = true
	}
	return m
}

// wxaCode is POST /wxa/getwxacodeunlimit. The real API draws a round "sun
// code" that only WeChat can read; the fake draws a standard QR code of the
// scene, with its quiet zone, so tests and developers can decode it.
func (f *Fake) wxaCode(q url.Values, body []byte, now time.Time) (any, int) {
	t, code := f.checkToken(q.Get("access_token"), now)
	if code != 0 {
		return nil, code
	}
	var req struct {
		Scene      string  `json:"scene"`
		Page       string  `json:"page"`
		CheckPath  *bool   `json:"check_path"`
		EnvVersion *string `json:"env_version"`
		Width      int     `json:"width"`
		IsHyaline  bool    `json:"is_hyaline"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, 47001
	}
	if !validScene(req.Scene) {
		return nil, 40129
	}
	env := "release"
	if req.EnvVersion != nil {
		// Present but empty is refused too, as on the real API.
		switch env = *req.EnvVersion; env {
		case "release", "trial", "develop":
		default:
			return nil, 40097
		}
	}
	if strings.HasPrefix(req.Page, "/") {
		return nil, 41030
	}
	if req.Page != "" && (req.CheckPath == nil || *req.CheckPath) {
		if a, ok := f.apps[t.appID]; !ok || !a.pages[req.Page] {
			return nil, 41030
		}
	}
	// WeChat documents 280 to 1280 but not what it does outside; the fake
	// draws at the nearest limit rather than refuse.
	width := min(max(req.Width, minWidth), maxWidth)
	if req.Width == 0 {
		width = defaultWidth
	}
	if len(f.wxaCodes) >= maxWXACodes {
		f.wxaCodes = append(f.wxaCodes[:0], f.wxaCodes[1:]...)
	}
	f.wxaCodes = append(f.wxaCodes, WXACode{AppID: t.appID, Scene: req.Scene, Page: req.Page, EnvVersion: env, Width: width})
	return qrPicture{content: req.Scene, size: width, transparent: req.IsHyaline}, 0
}

// checkToken finds an access token's record as every token-protected
// endpoint does: 41001 missing, 40001 unknown or superseded, 42001 expired.
// f.mu is held.
func (f *Fake) checkToken(at string, now time.Time) (*token, int) {
	if at == "" {
		return nil, 41001
	}
	t, ok := f.tokens[at]
	switch {
	case !ok || t.revoked:
		return nil, 40001
	case !now.Before(t.expires):
		return nil, 42001
	}
	return t, 0
}

func validScene(s string) bool {
	if s == "" || len(s) > maxSceneLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte(sceneChars, b) >= 0) {
			return false
		}
	}
	return true
}

// binaryAnswer is a success whose body is not JSON. api renders it after
// releasing f.mu.
type binaryAnswer interface {
	render() (contentType string, body []byte, err error)
}

// qrPicture is the fake's mini-program code: a PNG QR code, size pixels
// square, transparent around the modules for is_hyaline as the real one is.
type qrPicture struct {
	content     string
	size        int
	transparent bool
}

func (p qrPicture) render() (string, []byte, error) {
	q, err := qrcode.New(p.content, qrcode.Medium)
	if err != nil {
		return "", nil, err
	}
	if p.transparent {
		q.BackgroundColor = color.Transparent
	}
	png, err := q.PNG(p.size)
	if err != nil {
		return "", nil, err
	}
	return "image/png", png, nil
}
