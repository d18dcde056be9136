package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
)

// decodeClient runs decodeJSON on body as the admin handlers do.
func decodeClient(body []byte) (clientRequest, error) {
	req := httptest.NewRequest(http.MethodPost, "/admin/clients", bytes.NewReader(body))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	c := echo.New().NewContext(req, httptest.NewRecorder())
	var out clientRequest
	err := decodeJSON(c, &out)
	return out, err
}

func TestDecodeJSON(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		want       string // substring of error_description; "" means accepted
	}{
		{"valid", `{"client_id":"a","client_name":"A é","grant_types":["client_credentials"]}`, ""},
		{"escaped non-ASCII", `{"client_name":"\u00e9\ud83d\ude00"}`, ""},
		{"case differs", `{"Client_Name":"x"}`, `Unknown field "Client_Name": field names are case-sensitive, did you mean "client_name"?`},
		{"all caps", `{"CLIENT_ID":"x"}`, `"CLIENT_ID"`},
		{"unknown", `{"colour":"x"}`, `Unknown field "colour".`},
		{"duplicate", `{"client_id":"a","client_id":"b"}`, `Field "client_id" appears more than once.`},
		{"duplicate empty", `{"scope":"","scope":""}`, `Field "scope" appears more than once.`},
		{"NUL", `{"client_name":"a\u0000b"}`, `Field "client_name" contains a NUL character.`},
		{"NUL in array", `{"redirect_uris":["https://a.example/","x\u0000"]}`, `Field "redirect_uris[1]" contains a NUL character.`},
		{"NUL in name", `{"client_id\u0000":"a"}`, `A field name contains a NUL character.`},
		{"invalid UTF-8", "{\"client_name\":\"a\xffb\"}", `Field "client_name" is not valid UTF-8.`},
		{"invalid UTF-8 in array", "{\"audience\":[\"\xc3\"]}", `Field "audience[0]" is not valid UTF-8.`},
		{"invalid UTF-8 in name", "{\"client_\xff\":\"a\"}", `A field name is not valid UTF-8.`},
		{"wrong type", `{"grant_types":"client_credentials"}`, `Field "grant_types" must be an array of strings.`},
		{"nested too deeply", `{"audience":[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]}`, "nested too deeply"},
		{"not an object", `["client_id"]`, "Body must be a JSON object."},
		{"null", `null`, "Body must be a JSON object."},
		{"two objects", `{"client_id":"a"}{"client_id":"b"}`, "exactly one JSON object"},
		{"trailing garbage", `{"client_id":"a"} x`, "exactly one JSON object"},
		{"empty", ``, "empty or truncated"},
		{"truncated", `{"client_id":"a"`, "empty or truncated"},
		{"syntax", `{"client_id" "a"}`, "Malformed JSON"},
	}
	for _, tc := range cases {
		_, err := decodeClient([]byte(tc.body))
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != "invalid_request" || !strings.Contains(ae.description, tc.want) {
			t.Errorf("%s: got %v, want 400 invalid_request with %q", tc.name, err, tc.want)
		}
	}
}

// FuzzDecodeClientJSON: decodeJSON never panics and either refuses the
// body with a 4xx or yields a clientRequest that re-encodes and decodes
// back to itself (no NUL, no invalid UTF-8, nothing dropped).
func FuzzDecodeClientJSON(f *testing.F) {
	for _, s := range []string{
		`{"client_id":"svc","client_name":"Svc","grant_types":["client_credentials"],"scope":"read write","audience":["https://api.example.com"]}`,
		`{"client_id":"mp","token_endpoint_auth_method":"none","wechat_appid":"wx1","wechat_app_secret":"s","redirect_uris":["https://a.example/cb"]}`,
		`{"Client_Name":"x"}`,
		`{"client_id":"a","client_id":"b"}`,
		`{"client_name":"a\u0000b"}`,
		"{\"client_name\":\"\xff\"}",
		`{"audience":[["x"]]}`,
		`{"grant_types":null,"scope":"\ud800"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := decodeClient(body)
		if err != nil {
			var ae *apiError
			var he *echo.HTTPError
			switch {
			case errors.As(err, &ae):
				if ae.status < 400 || ae.status > 499 {
					t.Fatalf("status %d for %q", ae.status, body)
				}
			case errors.As(err, &he):
				if he.Code < 400 || he.Code > 499 {
					t.Fatalf("status %d for %q", he.Code, body)
				}
			default:
				t.Fatalf("untyped error %v for %q", err, body)
			}
			return
		}
		for _, s := range append([]string{got.ClientID, got.ClientSecret, got.ClientName, got.Scope,
			got.TokenEndpointAuthMethod, got.WeChatAppID, got.WeChatAppSecret},
			slicesOf(got.GrantTypes, got.Audience, got.RedirectURIs)...) {
			if strings.IndexByte(s, 0) >= 0 {
				t.Fatalf("accepted a NUL from %q", body)
			}
		}
		again, err := json.Marshal(got)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", got, err)
		}
		back, err := decodeClient(again)
		if err != nil || !reflect.DeepEqual(back, got) {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", body, back, err, got)
		}
	})
}

func slicesOf(ss ...[]string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}
