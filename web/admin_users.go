package web

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/wxidp/wxidp/audit"
	"github.com/wxidp/wxidp/storage"
)

// UserAdmin is what the admin users API needs of the store.
type UserAdmin interface {
	ListUsers(ctx context.Context, f storage.UserFilter, after *storage.UserCursor, limit int) ([]storage.User, error)
	UserDetails(ctx context.Context, id string) (*storage.UserDetails, error)
	SetUserDisabled(ctx context.Context, id string, disabled bool) (*storage.User, error)
	EraseUser(ctx context.Context, id string) error
}

// Paging and input bounds of GET /admin/users.
const (
	defaultUserLimit = 100
	maxUserLimit     = 1000
	maxUserParam     = 128
)

// userView is a user as the admin API shows it: never a session key.
type userView struct {
	Sub              string `json:"sub"`
	PhoneNumber      string `json:"phone_number,omitempty"`
	Nickname         string `json:"nickname,omitempty"`
	Picture          string `json:"picture,omitempty"`
	ProfileUpdatedAt string `json:"profile_updated_at,omitempty"`
	Disabled         bool   `json:"disabled"`
	DisabledAt       string `json:"disabled_at,omitempty"`
	CreatedAt        string `json:"created_at"`
	UpdatedAt        string `json:"updated_at"`
}

type identityView struct {
	AppID     string `json:"appid"`
	OpenID    string `json:"openid"`
	UnionID   string `json:"unionid,omitempty"`
	CreatedAt string `json:"created_at"`
	LastLogin string `json:"last_login_at"`
}

type chainView struct {
	ChainID   string `json:"chain_id"`
	ClientID  string `json:"client_id"`
	Scope     string `json:"scope"`
	IssuedAt  string `json:"issued_at"`
	ExpiresAt string `json:"expires_at,omitempty"`
}

type userDetailsView struct {
	userView
	Identities  []identityView `json:"identities"`
	LastLoginAt string         `json:"last_login_at,omitempty"`
	Chains      []chainView    `json:"refresh_token_chains"`
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func viewUser(u *storage.User) userView {
	return userView{Sub: u.ID, PhoneNumber: u.PhoneNumber, Nickname: u.Nickname, Picture: u.Picture,
		ProfileUpdatedAt: stamp(u.ProfileUpdatedAt), Disabled: u.Disabled(), DisabledAt: stamp(u.DisabledAt),
		CreatedAt: stamp(u.CreatedAt), UpdatedAt: stamp(u.UpdatedAt)}
}

// usersAvailable answers 404 when no user store is configured.
func (a *admin) usersAvailable() error {
	if a.Users == nil {
		return newAPIError(http.StatusNotFound, "not_found", "No user store is configured.")
	}
	return nil
}

// listUsers answers GET /admin/users: users newest first, filtered,
// limit per page; next_cursor, present while more users match, resumes
// after the page's last user.
func (a *admin) listUsers(c echo.Context) error {
	if err := a.usersAvailable(); err != nil {
		return err
	}
	f, after, limit, err := usersQuery(c)
	if err != nil {
		return newAPIError(http.StatusBadRequest, "invalid_request", err.Error())
	}
	users, err := a.Users.ListUsers(c.Request().Context(), f, after, limit+1)
	if err != nil {
		return err
	}
	resp := struct {
		Users      []userView `json:"users"`
		NextCursor string     `json:"next_cursor,omitempty"`
	}{Users: make([]userView, 0, min(len(users), limit))}
	if len(users) > limit {
		users = users[:limit]
		last := users[limit-1]
		resp.NextCursor = encodeUserCursor(storage.UserCursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	for i := range users {
		resp.Users = append(resp.Users, viewUser(&users[i]))
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, resp)
}

// usersQuery parses the query string. Errors name the parameter, never
// echo more than it.
func usersQuery(c echo.Context) (storage.UserFilter, *storage.UserCursor, int, error) {
	var f storage.UserFilter
	q := c.QueryParams()
	known := map[string]*string{"openid": &f.OpenID, "appid": &f.AppID, "unionid": &f.UnionID, "phone": &f.Phone,
		"client_id": &f.ClientID, "created_after": nil, "created_before": nil, "limit": nil, "cursor": nil}
	for name, vs := range q {
		dst, ok := known[name]
		switch {
		case !ok:
			return f, nil, 0, errors.New("unknown query parameter (known: openid, appid, unionid, phone, client_id, created_after, created_before, limit, cursor)")
		case len(vs) != 1:
			return f, nil, 0, fmt.Errorf("%s is repeated", name)
		case len(vs[0]) > maxUserParam:
			return f, nil, 0, fmt.Errorf("%s is too long", name)
		case dst != nil:
			*dst = vs[0]
		}
	}
	if f.AppID != "" && f.OpenID == "" {
		return f, nil, 0, errors.New("appid filters openid: give openid too")
	}
	if err := timeRange(q, "created_after", "created_before", &f.CreatedAfter, &f.CreatedBefore); err != nil {
		return f, nil, 0, err
	}
	limit, err := pageLimit(q, defaultUserLimit, maxUserLimit)
	if err != nil {
		return f, nil, 0, err
	}
	var after *storage.UserCursor
	if v := q.Get("cursor"); v != "" {
		cur, err := decodeUserCursor(v)
		if err != nil {
			return f, nil, 0, errors.New("cursor is not one this server issued")
		}
		after = &cur
	}
	return f, after, limit, nil
}

// A user cursor is opaque, versioned like the audit one: created_at in
// microseconds, then the subject.
const userCursorPrefix = "u1."

func encodeUserCursor(c storage.UserCursor) string {
	return userCursorPrefix + base64.RawURLEncoding.EncodeToString(
		[]byte(strconv.FormatInt(c.CreatedAt.UnixMicro(), 10)+"."+c.ID))
}

func decodeUserCursor(s string) (storage.UserCursor, error) {
	var c storage.UserCursor
	rest, ok := strings.CutPrefix(s, userCursorPrefix)
	if !ok || len(rest) > 256 {
		return c, errors.New("bad cursor")
	}
	raw, err := base64.RawURLEncoding.DecodeString(rest)
	if err != nil {
		return c, err
	}
	us, id, ok := strings.Cut(string(raw), ".")
	micros, err := strconv.ParseInt(us, 10, 64)
	if !ok || err != nil || id == "" || !validSubject(id) || !timestampMicros(micros) {
		return c, errors.New("bad cursor")
	}
	c.CreatedAt, c.ID = time.UnixMicro(micros).UTC(), id
	return c, nil
}

// validSubject bounds a subject from a URL: printable ASCII, as every
// subject this server mints (a UUID) is; anything else cannot exist.
func validSubject(sub string) bool {
	if sub == "" || len(sub) > maxUserParam {
		return false
	}
	for i := 0; i < len(sub); i++ {
		if sub[i] <= ' ' || sub[i] >= 0x7f {
			return false
		}
	}
	return true
}

// subject reads and checks the :sub path parameter.
func subject(c echo.Context) (string, error) {
	sub := c.Param("sub")
	if !validSubject(sub) {
		return "", newAPIError(http.StatusNotFound, "not_found", "No such user.")
	}
	return sub, nil
}

func userNotFound(err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return newAPIError(http.StatusNotFound, "not_found", "No such user.")
	}
	return err
}

// getUser answers GET /admin/users/{sub}.
func (a *admin) getUser(c echo.Context) error {
	if err := a.usersAvailable(); err != nil {
		return err
	}
	sub, err := subject(c)
	if err != nil {
		return err
	}
	d, err := a.Users.UserDetails(c.Request().Context(), sub)
	if err != nil {
		return userNotFound(err)
	}
	v := userDetailsView{userView: viewUser(&d.User), LastLoginAt: stamp(d.LastLoginAt),
		Identities: make([]identityView, 0, len(d.Identities)), Chains: make([]chainView, 0, len(d.Chains))}
	for _, id := range d.Identities {
		v.Identities = append(v.Identities, identityView{AppID: id.AppID, OpenID: id.OpenID, UnionID: id.UnionID,
			CreatedAt: stamp(id.CreatedAt), LastLogin: stamp(id.UpdatedAt)})
	}
	for _, ch := range d.Chains {
		v.Chains = append(v.Chains, chainView{ChainID: ch.RequestID, ClientID: ch.ClientID, Scope: strings.Join(ch.Scopes, " "),
			IssuedAt: stamp(ch.IssuedAt), ExpiresAt: stamp(ch.ExpiresAt)})
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, v)
}

// setDisabled answers POST /admin/users/{sub}/disable and /enable.
func (a *admin) setDisabled(disabled bool) echo.HandlerFunc {
	typ := audit.UserEnabled
	if disabled {
		typ = audit.UserDisabled
	}
	return func(c echo.Context) error {
		if err := a.usersAvailable(); err != nil {
			return err
		}
		sub, err := subject(c)
		if err != nil {
			return err
		}
		u, err := a.Users.SetUserDisabled(c.Request().Context(), sub, disabled)
		a.record(c, typ, sub, err, nil)
		if err != nil {
			return userNotFound(err)
		}
		c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
		return c.JSON(http.StatusOK, viewUser(u))
	}
}

// deleteUser answers DELETE /admin/users/{sub}: erasure. The audit event
// names only the erased subject.
func (a *admin) deleteUser(c echo.Context) error {
	if err := a.usersAvailable(); err != nil {
		return err
	}
	sub, err := subject(c)
	if err != nil {
		return err
	}
	err = a.Users.EraseUser(c.Request().Context(), sub)
	a.record(c, audit.UserDeleted, sub, err, nil)
	if err != nil {
		return userNotFound(err)
	}
	return c.NoContent(http.StatusNoContent)
}
