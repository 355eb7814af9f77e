// Package webhook turns the push and pull-request notifications of code
// hosting services into changes: it serves /change_hook/DIALECT for the
// dialects declared with change_hook() in master.star (github, gitlab,
// gitea, bitbucket and base), and /change_hook/poller, which asks a git
// poller to poll at once.
//
// A request is checked before anything is stored: its signature or token
// (403 when wrong or missing), its size (413), its JSON (400 with the
// reason). The changes of one request are stored together or not at all.
package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// DefaultMaxBody bounds a request's body when Options.MaxBody is 0. The
// largest payloads, GitHub pushes of many commits, stay well below it.
const DefaultMaxBody = 10 << 20

// Sink stores the changes a request produced, in one transaction.
// *store.Store implements it; the master wraps it to wake its schedulers.
type Sink interface {
	AddChanges(ctx context.Context, cs []store.Change, state ...store.StateValue) ([]store.Change, error)
}

// Poller polls a change source at once.
type Poller interface {
	// PollNow polls the poller called name and returns when the poll is
	// done. For a name it does not know it returns an error for which
	// IsUnknownPoller reports true.
	PollNow(ctx context.Context, name string) error
}

// IsUnknownPoller reports whether err says that a poller does not exist:
// whether err, or an error it wraps, has a method UnknownPoller() bool
// that returns true. Poller implementations mark their error that way so
// that neither package imports the other.
func IsUnknownPoller(err error) bool {
	var u interface{ UnknownPoller() bool }
	return errors.As(err, &u) && u.UnknownPoller()
}

// Options configures the handler.
type Options struct {
	// Hooks returns the configuration in force. It is called for every
	// request, so that a reconfig applies to the next one. A nil result
	// answers 503.
	Hooks func() *config.Config
	// Sink receives the changes. Required.
	Sink Sink
	// Poller serves /change_hook/poller; nil answers 404 there.
	Poller Poller
	// Logger receives one line per request that created changes or was
	// refused. Nil discards them.
	Logger *slog.Logger
	// MaxBody bounds request bodies, in bytes; 0 means DefaultMaxBody.
	MaxBody int64
}

// Prefix is the path the handler serves below.
const Prefix = "/change_hook/"

type handler struct {
	opts Options
	log  *slog.Logger
}

// New returns the handler of /change_hook/{dialect}. It expects the full
// request path, Prefix included. It is safe for concurrent use.
func New(opts Options) http.Handler {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	h := &handler{opts: opts, log: opts.Logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// hookError is a refusal with the status to answer it with. Its message
// goes to the sender, so it says what to fix and holds no secret.
type hookError struct {
	status int
	msg    string
}

func (e *hookError) Error() string { return e.msg }

func refuse(status int, format string, args ...any) error {
	return &hookError{status: status, msg: fmt.Sprintf(format, args...)}
}

// badPayload is a 400 for a payload that cannot become changes.
func badPayload(format string, args ...any) error {
	return refuse(http.StatusBadRequest, format, args...)
}

// reply is the body of a 200 answer.
type reply struct {
	ChangeIDs []int64 `json:"changeids"`
	// Ignored says why a valid request created no change: an event that
	// is not handled, a deleted branch, a push without commits.
	Ignored string `json:"ignored,omitempty"`
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dialect, _ := strings.CutPrefix(r.URL.Path, Prefix)
	var (
		ids     []int64
		ignored string
		err     error
	)
	if dialect == "poller" {
		err = h.poll(w, r)
	} else {
		ids, ignored, err = h.serveHook(w, r, dialect)
	}
	if err != nil {
		st := http.StatusInternalServerError
		msg := "internal server error (details are in the master's log)"
		var he *hookError
		if errors.As(err, &he) {
			st, msg = he.status, he.msg
		}
		if st >= 500 {
			h.log.Error("webhook: request failed", "dialect", dialect, "remote", r.RemoteAddr, "err", err)
		} else {
			h.log.Warn("webhook: request refused", "dialect", dialect, "remote", r.RemoteAddr, "status", st, "reason", msg)
		}
		if st == http.StatusMethodNotAllowed {
			allow := "POST"
			if dialect == "poller" {
				allow = "GET, POST"
			}
			w.Header().Set("Allow", allow)
		}
		writeJSON(w, st, map[string]string{"error": msg})
		return
	}
	if dialect == "poller" {
		writeJSON(w, http.StatusOK, map[string]string{"status": "polled"})
		return
	}
	if ids == nil {
		ids = []int64{}
	}
	if len(ids) > 0 {
		h.log.Info("webhook: changes created", "dialect", dialect, "changeids", ids)
	} else {
		h.log.Info("webhook: no change", "dialect", dialect, "reason", ignored)
	}
	writeJSON(w, http.StatusOK, reply{ChangeIDs: ids, Ignored: ignored})
}

// serveHook handles one request to a dialect's hook and returns the ids
// of the changes it stored, or why there were none.
func (h *handler) serveHook(w http.ResponseWriter, r *http.Request, dialect string) ([]int64, string, error) {
	d, known := dialects[dialect]
	if !known {
		return nil, "", refuse(http.StatusNotFound, "no change hook dialect %q; the dialects are github, gitlab, gitea, bitbucket, base and poller", dialect)
	}
	if r.Method != http.MethodPost {
		return nil, "", refuse(http.StatusMethodNotAllowed, "method %s not allowed; webhooks are POSTed", r.Method)
	}
	cfg := h.opts.Hooks()
	if cfg == nil {
		return nil, "", refuse(http.StatusServiceUnavailable, "the master has no configuration yet")
	}
	hook := cfg.ChangeHook(dialect)
	if hook == nil {
		return nil, "", refuse(http.StatusNotFound, "change hook %q is not enabled: master.star has no change_hook(%q)", dialect, dialect)
	}
	body, err := readBody(w, r, h.opts.MaxBody)
	if err != nil {
		return nil, "", err
	}
	req := &request{r: r, body: body, hook: hook}
	if err := h.authenticate(req, cfg, d); err != nil {
		return nil, "", err
	}
	cs, ignored, err := d.parse(req)
	if err != nil {
		return nil, "", err
	}
	if len(cs) == 0 {
		return nil, ignored, nil
	}
	for i := range cs {
		applyHook(&cs[i], hook)
	}
	stored, err := h.opts.Sink.AddChanges(r.Context(), cs)
	if err != nil {
		return nil, "", fmt.Errorf("store %d changes from %s: %w", len(cs), dialect, err)
	}
	ids := make([]int64, len(stored))
	for i, c := range stored {
		ids[i] = c.ID
	}
	return ids, "", nil
}

// applyHook sets the hook's own codebase, project and category on c.
func applyHook(c *store.Change, hook *config.ChangeHook) {
	if hook.Codebase != "" {
		c.Codebase = hook.Codebase
	}
	if hook.Project != "" {
		c.Project = hook.Project
	}
	if hook.Category != "" {
		c.Category = hook.Category
	}
}

func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, error) {
	if r.ContentLength > max {
		return nil, refuse(http.StatusRequestEntityTooLarge, "request body of %d bytes is larger than the limit of %d", r.ContentLength, max)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, refuse(http.StatusRequestEntityTooLarge, "request body larger than the limit of %d bytes", max)
		}
		return nil, badPayload("reading the request body: %v", err)
	}
	return body, nil
}

// request is one hook request, its body read.
type request struct {
	r    *http.Request
	body []byte
	hook *config.ChangeHook
}

// dialect is how one service's requests are checked and read.
type dialect struct {
	// signature returns the HMAC-SHA256 of the body that the request
	// claims, and the header it came from; nil if there is none. For
	// dialects that send a token instead, it is nil.
	signature func(r *http.Request) (sig []byte, header string, err error)
	// tokenHeader carries the shared token of dialects that send one.
	tokenHeader string
	// parse returns the request's changes, or why there are none.
	parse func(req *request) ([]store.Change, string, error)
}

var dialects = map[string]dialect{
	"github":    {signature: prefixedSignature("X-Hub-Signature-256"), parse: parseGitHub},
	"gitea":     {signature: giteaSignature, parse: parseGitea},
	"bitbucket": {signature: prefixedSignature("X-Hub-Signature"), parse: parseBitbucket},
	"gitlab":    {tokenHeader: "X-Gitlab-Token", parse: parseGitLab},
	"base":      {tokenHeader: "X-Starforge-Token", parse: parseBase},
}

// authenticate checks the request's signature or token against the
// hook's secret, looked up now so that a changed secret file applies to
// the next request. A hook without secret accepts every request.
func (h *handler) authenticate(req *request, cfg *config.Config, d dialect) error {
	name := req.hook.Secret
	if d.tokenHeader != "" {
		name = req.hook.Token
	}
	if name == "" {
		return nil
	}
	secret, err := cfg.Secret(name)
	if err != nil {
		return fmt.Errorf("change hook %s: %w", req.hook.Dialect, err)
	}
	if secret == "" {
		return fmt.Errorf("change hook %s: secret %s is empty", req.hook.Dialect, name)
	}
	if d.tokenHeader != "" {
		got := req.r.Header.Get(d.tokenHeader)
		if got == "" {
			return refuse(http.StatusForbidden, "missing %s header", d.tokenHeader)
		}
		// Compare digests so that the time taken does not depend on where
		// the values differ nor on their lengths.
		a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(secret))
		if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
			return refuse(http.StatusForbidden, "wrong %s", d.tokenHeader)
		}
		return nil
	}
	sig, header, err := d.signature(req.r)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(req.body)
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return refuse(http.StatusForbidden, "%s does not match the body: wrong secret, or the body was changed", header)
	}
	return nil
}

// prefixedSignature reads a "sha256=HEX" signature from header.
func prefixedSignature(header string) func(r *http.Request) ([]byte, string, error) {
	return func(r *http.Request) ([]byte, string, error) {
		v := r.Header.Get(header)
		if v == "" {
			return nil, header, refuse(http.StatusForbidden, "missing %s header: the hook has a secret, so payloads must be signed", header)
		}
		hexSig, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return nil, header, refuse(http.StatusForbidden, "%s: want sha256=HEX, got %.20q", header, v)
		}
		sig, err := hex.DecodeString(hexSig)
		if err != nil {
			return nil, header, refuse(http.StatusForbidden, "%s: invalid hex digest", header)
		}
		return sig, header, nil
	}
}

// giteaSignature reads X-Gitea-Signature (a bare hex digest), or, from
// versions and forks that send only that, X-Hub-Signature-256.
func giteaSignature(r *http.Request) ([]byte, string, error) {
	const header = "X-Gitea-Signature"
	v := r.Header.Get(header)
	if v == "" {
		if r.Header.Get("X-Hub-Signature-256") != "" {
			return prefixedSignature("X-Hub-Signature-256")(r)
		}
		return nil, header, refuse(http.StatusForbidden, "missing %s header: the hook has a secret, so payloads must be signed", header)
	}
	sig, err := hex.DecodeString(v)
	if err != nil {
		return nil, header, refuse(http.StatusForbidden, "%s: invalid hex digest", header)
	}
	return sig, header, nil
}

// poll serves /change_hook/poller?poller=NAME[&poller=NAME...].
func (h *handler) poll(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return refuse(http.StatusMethodNotAllowed, "method %s not allowed; use GET or POST", r.Method)
	}
	if h.opts.Poller == nil {
		return refuse(http.StatusNotFound, "this master has no pollers")
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.opts.MaxBody)
	var err error
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == "multipart/form-data" {
		err = r.ParseMultipartForm(h.opts.MaxBody)
	} else {
		err = r.ParseForm()
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refuse(http.StatusRequestEntityTooLarge, "request body larger than the limit of %d bytes", h.opts.MaxBody)
		}
		return badPayload("reading the form: %v", err)
	}
	names := r.Form["poller"]
	if len(names) == 0 {
		return badPayload("poller: want at least one poller=NAME")
	}
	var unknown []string
	for _, name := range names {
		if err := h.opts.Poller.PollNow(r.Context(), name); err != nil {
			if IsUnknownPoller(err) {
				unknown = append(unknown, fmt.Sprintf("%q", name))
				continue
			}
			return fmt.Errorf("poll %s: %w", name, err)
		}
		h.log.Info("webhook: polled", "poller", name)
	}
	if len(unknown) > 0 {
		return refuse(http.StatusNotFound, "unknown poller %s", strings.Join(unknown, ", "))
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// formPayload returns the JSON document of a request: the body, or the
// payload= field of a form-encoded body (GitHub's and Gitea's other
// content type).
func formPayload(req *request) ([]byte, error) {
	ct := req.r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || (err == nil && mt == "application/json") {
		return req.body, nil
	}
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, refuse(http.StatusUnsupportedMediaType, "Content-Type: want application/json or application/x-www-form-urlencoded, got %q", ct)
	}
	form, err := url.ParseQuery(string(req.body))
	if err != nil {
		return nil, badPayload("form body: %v", err)
	}
	p, ok := form["payload"]
	if !ok || len(p) != 1 {
		return nil, badPayload("form body: want one payload= field holding the JSON payload")
	}
	return []byte(p[0]), nil
}
