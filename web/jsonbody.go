package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// decodeJSON reads one JSON object into v, a pointer to a struct, and
// refuses, naming the field at fault so an operator sees what to fix, what
// encoding/json would let through: unknown fields, names that match a field
// only if case is ignored, repeated fields (it keeps the last), invalid
// UTF-8 (it substitutes U+FFFD) and NUL characters (PostgreSQL text cannot
// hold them: they would fail as a 500).
func decodeJSON(c echo.Context, v any) error {
	if ct := c.Request().Header.Get(echo.HeaderContentType); !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return newAPIError(http.StatusUnsupportedMediaType, "invalid_request", "Content-Type must be application/json.")
	}
	body, err := io.ReadAll(c.Request().Body)
	if err != nil {
		return jsonError(err)
	}
	if err := checkJSON(body, reflect.TypeOf(v)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	return nil
}

// maxJSONDepth bounds nesting; admin bodies are two levels deep.
const maxJSONDepth = 16

// jsonChecker walks a JSON document token by token. raw is the document,
// prev the offset where the previous token ended: the bytes in between hold
// the current token as sent, before encoding/json replaced bad UTF-8.
type jsonChecker struct {
	dec  *json.Decoder
	raw  []byte
	prev int64
}

func checkJSON(raw []byte, t reflect.Type) error {
	w := &jsonChecker{dec: json.NewDecoder(bytes.NewReader(raw)), raw: raw}
	tok, err := w.token("")
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return newAPIError(http.StatusBadRequest, "invalid_request", "Body must be a JSON object.")
	}
	if err := w.object(t, "", 1); err != nil {
		return err
	}
	if _, err := w.dec.Token(); !errors.Is(err, io.EOF) {
		return newAPIError(http.StatusBadRequest, "invalid_request", "Body must hold exactly one JSON object.")
	}
	return nil
}

// token reads the next token and checks the strings among them; field
// names the value being read ("" for a field name).
func (w *jsonChecker) token(field string) (json.Token, error) {
	tok, err := w.dec.Token()
	if err != nil {
		return nil, jsonError(err)
	}
	start, end := w.prev, w.dec.InputOffset()
	w.prev = end
	s, ok := tok.(string)
	if !ok {
		return tok, nil
	}
	what := "A field name"
	if field != "" {
		what = fmt.Sprintf("Field %q", field)
	}
	if !utf8.Valid(w.raw[start:end]) {
		return nil, newAPIError(http.StatusBadRequest, "invalid_request", what+" is not valid UTF-8.")
	}
	if strings.IndexByte(s, 0) >= 0 {
		return nil, newAPIError(http.StatusBadRequest, "invalid_request", what+" contains a NUL character.")
	}
	return tok, nil
}

// value checks one value of Go type t (nil when unknown) after its first
// token tok.
func (w *jsonChecker) value(t reflect.Type, field string, tok json.Token, depth int) error {
	d, ok := tok.(json.Delim)
	if !ok {
		return nil
	}
	if depth >= maxJSONDepth {
		return newAPIError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("Field %q is nested too deeply.", field))
	}
	if d == '{' {
		return w.object(t, field, depth+1)
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var elem reflect.Type
	if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
		elem = t.Elem()
	}
	for i := 0; w.dec.More(); i++ {
		name := fmt.Sprintf("%s[%d]", field, i)
		tok, err := w.token(name)
		if err != nil {
			return err
		}
		if err := w.value(elem, name, tok, depth+1); err != nil {
			return err
		}
	}
	_, err := w.token(field) // ]
	return err
}

// object checks the members of an object whose { was read: for a struct,
// every name must be exactly one of its JSON field names; always, no name
// may appear twice.
func (w *jsonChecker) object(t reflect.Type, field string, depth int) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var known map[string]reflect.Type
	if t != nil && t.Kind() == reflect.Struct {
		known = jsonFields(t)
	}
	seen := map[string]bool{}
	for w.dec.More() {
		tok, err := w.token("")
		if err != nil {
			return err
		}
		key, _ := tok.(string) // object keys are always strings
		name := key
		if field != "" {
			name = field + "." + key
		}
		ft, ok := known[key]
		if known != nil && !ok {
			return unknownField(name, key, known)
		}
		if seen[key] {
			return newAPIError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("Field %q appears more than once.", name))
		}
		seen[key] = true
		if tok, err = w.token(name); err != nil {
			return err
		}
		if err := w.value(ft, name, tok, depth); err != nil {
			return err
		}
	}
	_, err := w.token(field) // }
	return err
}

func unknownField(name, key string, known map[string]reflect.Type) error {
	for k := range known {
		if strings.EqualFold(k, key) {
			return newAPIError(http.StatusBadRequest, "invalid_request",
				fmt.Sprintf("Unknown field %q: field names are case-sensitive, did you mean %q?", name, k))
		}
	}
	return newAPIError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("Unknown field %q.", name))
}

// jsonFields maps the JSON names of a struct's fields, as encoding/json
// names them, to their types. Embedded structs are not flattened: request
// types here have none.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f.Type
	}
	return out
}

func jsonError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return echo.ErrStatusRequestEntityTooLarge
	case errors.As(err, &typeErr):
		return newAPIError(http.StatusBadRequest, "invalid_request",
			fmt.Sprintf("Field %q must be %s.", typeErr.Field, jsonKind(typeErr.Type.Kind().String())))
	case errors.As(err, &syntaxErr):
		return newAPIError(http.StatusBadRequest, "invalid_request", fmt.Sprintf("Malformed JSON at byte %d.", syntaxErr.Offset))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newAPIError(http.StatusBadRequest, "invalid_request", "Body is empty or truncated JSON.")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return newAPIError(http.StatusBadRequest, "invalid_request",
			"Unknown field "+strings.TrimPrefix(err.Error(), "json: unknown field ")+".")
	default:
		return newAPIError(http.StatusBadRequest, "invalid_request", "Malformed JSON body.")
	}
}

func jsonKind(k string) string {
	switch k {
	case "slice":
		return "an array of strings"
	case "string":
		return "a string"
	default:
		return "of type " + k
	}
}
