package wechat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// ErrInvalidScene is wrapped by the error WXACodeUnlimited returns, before
// any request, for a scene WeChat would refuse with 40129: empty, longer than
// MaxSceneLen or holding a character outside SceneChars.
var ErrInvalidScene = errors.New("wechat: invalid wxacode scene")

// MaxSceneLen is the longest scene getwxacodeunlimit accepts.
const MaxSceneLen = 32

// SceneChars are the characters a scene may hold besides ASCII letters and
// digits. Anything else (Chinese, %, spaces) must be encoded by the caller
// into these.
const SceneChars = "!#$&'()*+,/:;=?@-._~"

// maxImage bounds the image we accept: real codes are 30-300 KB even at
// width 1280, so more is a misbehaving proxy, not a picture.
const maxImage = 2 << 20

// WXACodeRequest is what getwxacodeunlimit draws. Zero values are omitted
// from the request, so WeChat's defaults apply.
type WXACodeRequest struct {
	// Scene is what the mini-program receives (options.scene, URL-encoded)
	// when the code is scanned: 1 to 32 characters, letters, digits and
	// SceneChars.
	Scene string
	// Page opens on scan, e.g. "pages/scan/index", without a leading slash;
	// "" opens the home page.
	Page string
	// CheckPath nil (WeChat's default, true) makes WeChat refuse with 41030
	// a Page that is not in the published version; false allows an
	// unpublished page, as trial and develop builds need.
	CheckPath *bool
	// EnvVersion is "release" (when ""), "trial" or "develop". Sending an
	// empty env_version earns 40097, so "" is left out instead.
	EnvVersion string
	// Width is the picture's width in pixels, 280 to 1280; 0 means 430.
	Width int
}

// WXACode is a mini-program code picture.
type WXACode struct {
	ContentType string // "image/jpeg", or "image/png" for a transparent code; sniffed, not WeChat's header
	Image       []byte
}

// String keeps %v from dumping the picture.
func (c WXACode) String() string {
	return fmt.Sprintf("{ContentType:%s Image:[%d bytes]}", c.ContentType, len(c.Image))
}

// WXACodeUnlimited draws a mini-program code for req.Scene:
// POST /wxa/getwxacodeunlimit. The number of such codes is unlimited, and
// one costs nothing until scanned, so a code may be fetched per login ticket.
//
// Success is the image itself; a refusal is the usual JSON errcode, e.g.
// 40129 (scene), 41030 (page), 40097 (env_version, width), 45009 (daily
// quota), and 40001 / 42001 for a stale accessToken, which the caller may
// refresh (StableToken with forceRefresh) and retry once. An answer that is
// neither JSON nor a JPEG or PNG is a *TransportError wrapping
// ErrUnavailable. Retries follow Code2Session's rule, harmless here since
// drawing a code changes nothing.
func (c *Client) WXACodeUnlimited(ctx context.Context, accessToken string, req WXACodeRequest) (WXACode, error) {
	const op = "wxacode"
	if err := checkScene(req.Scene); err != nil {
		return WXACode{}, fmt.Errorf("wechat %s: %w", op, err)
	}
	var code WXACode
	err := c.do(ctx, call{
		op: op, method: http.MethodPost, path: "/wxa/getwxacodeunlimit",
		query: url.Values{"access_token": {accessToken}},
		body: struct {
			Scene      string `json:"scene"`
			Page       string `json:"page,omitempty"`
			CheckPath  *bool  `json:"check_path,omitempty"`
			EnvVersion string `json:"env_version,omitempty"`
			Width      int    `json:"width,omitempty"`
		}{req.Scene, req.Page, req.CheckPath, req.EnvVersion, req.Width},
		secrets: []string{accessToken},
		maxBody: maxImage,
		binary: func(data []byte) error {
			// The header is not trusted for an image either: a proxy's
			// error page labelled image/jpeg must not reach a user's screen.
			ct := http.DetectContentType(data)
			if ct != "image/jpeg" && ct != "image/png" {
				return malformed(op)
			}
			code = WXACode{ContentType: ct, Image: data}
			return nil
		},
	}, nil)
	if err != nil {
		return WXACode{}, err
	}
	return code, nil
}

// checkScene applies getwxacodeunlimit's documented scene rule.
func checkScene(s string) error {
	if s == "" || len(s) > MaxSceneLen {
		return fmt.Errorf("%w: length %d, want 1 to %d", ErrInvalidScene, len(s), MaxSceneLen)
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte(SceneChars, b) >= 0 {
			continue
		}
		return fmt.Errorf("%w: character at %d not allowed", ErrInvalidScene, i)
	}
	return nil
}

// isJSONAnswer tells a JSON refusal from an image. The body decides when it
// starts like a JSON object, whatever the header says (a mislabelled refusal
// must still yield its errcode, e.g. 40001 to refresh the token). Otherwise a JSON or text header makes it JSON, so that
// a garbled error is reported as malformed rather than as a bad picture.
func isJSONAnswer(contentType string, data []byte) bool {
	if t := bytes.TrimLeft(data, " \t\r\n"); len(t) > 0 && t[0] == '{' {
		return true
	}
	mt, _, _ := mime.ParseMediaType(contentType)
	return mt == "application/json" || mt == "text/plain"
}
