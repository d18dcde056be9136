package scan

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/wxidp/wxidp/provider/wechat"
	"github.com/wxidp/wxidp/storage"
)

// ScanPath is where a plain QR code points: a phone camera that is not
// WeChat's lands on a page telling the user to scan with the mini-program.
const ScanPath = "/login/scan"

// Picture is a login page's QR picture.
type Picture struct {
	ContentType string
	Image       []byte
}

// WXACodeAPI is what a mini-program code needs from WeChat (wechat.Client).
type WXACodeAPI interface {
	WXACodeUnlimited(ctx context.Context, accessToken string, req wechat.WXACodeRequest) (wechat.WXACode, error)
}

// AppTokens hands out an app's shared WeChat access token
// (apptoken.Cache); stale names a token WeChat refused, to be replaced.
type AppTokens interface {
	Get(ctx context.Context, appID, secret, stale string) (string, error)
}

// Cipher opens the client's sealed WeChat app secret (keys.Cipher).
type Cipher interface {
	Open(sealed, aad []byte) ([]byte, error)
}

// Pictures draws the QR picture of a ticket.
type Pictures struct {
	Issuer string
	WX     WXACodeAPI // nil: plain QR codes only (dev mode)
	Tokens AppTokens
	Cipher Cipher
}

// ErrNoPicture wraps a failure to get the mini-program code from WeChat.
var ErrNoPicture = errors.New("scan: the login code picture is not available")

// For returns the picture for ticket of client c: the mini-program code
// (scene = ticket, page = the client's login page) when c has a WeChat app
// with its secret, else a plain QR code of {issuer}/login/scan?ticket=.
func (p *Pictures) For(ctx context.Context, c *storage.Client, ticket string) (Picture, error) {
	if p.WX == nil || c.WeChatAppID == "" || len(c.WeChatAppSecret) == 0 {
		return PlainQR(p.Issuer + ScanPath + "?ticket=" + url.QueryEscape(ticket))
	}
	secret, err := p.Cipher.Open(c.WeChatAppSecret, storage.SealedAppSecret.AAD(c.WeChatAppID))
	if err != nil {
		return Picture{}, fmt.Errorf("%w: app secret: %w", ErrNoPicture, err)
	}
	req := wechat.WXACodeRequest{Scene: ticket, Page: c.WeChatLoginPage, Width: PictureSize}
	tok, err := p.Tokens.Get(ctx, c.WeChatAppID, string(secret), "")
	if err != nil {
		return Picture{}, fmt.Errorf("%w: %w", ErrNoPicture, err)
	}
	code, err := p.WX.WXACodeUnlimited(ctx, tok, req)
	var api *wechat.APIError
	if errors.As(err, &api) && (api.Code == wechat.CodeInvalidToken || api.Code == wechat.CodeTokenExpired) {
		// Another process refreshed the shared token: take the new one.
		if tok, err = p.Tokens.Get(ctx, c.WeChatAppID, string(secret), tok); err != nil {
			return Picture{}, fmt.Errorf("%w: %w", ErrNoPicture, err)
		}
		code, err = p.WX.WXACodeUnlimited(ctx, tok, req)
	}
	if err != nil {
		return Picture{}, fmt.Errorf("%w: %w", ErrNoPicture, err)
	}
	return Picture{ContentType: code.ContentType, Image: code.Image}, nil
}

// PictureSize is the side of a login picture in pixels: WeChat's
// smallest mini-program code, and the size the page shows it at, so no
// scaling blurs the modules a camera must tell apart.
const PictureSize = 280

// PlainQR draws content as a PNG QR code (medium error correction,
// PictureSize pixels, quiet zone included).
func PlainQR(content string) (Picture, error) {
	png, err := qrcode.Encode(content, qrcode.Medium, PictureSize)
	if err != nil {
		return Picture{}, err
	}
	return Picture{ContentType: "image/png", Image: png}, nil
}
