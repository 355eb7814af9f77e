package webui

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/starforge/starforge/config"
)

// Options configures a Server.
type Options struct {
	// Logger receives errors that cannot be shown to the client (store
	// failures, panics). Nil discards them.
	Logger *slog.Logger
	// ChangeHook, if set, serves /change_hook/ (the webhooks).
	ChangeHook http.Handler
	// Config, if set, returns the configuration in force; with
	// master(web_auth = "users") it decides who may do what (auth.go).
	Config func() *config.Config
	// Basedir is the master's base directory, from which artifacts are
	// served; "" serves none.
	Basedir string
	// Jobs, if set, accepts package jobs at POST /api/v2/jobs (api_jobs.go);
	// without it that endpoint answers 501.
	Jobs JobSubmitter
}

// Server serves the web UI and REST API of one master.
type Server struct {
	m       Master
	log     *slog.Logger
	hook    http.Handler
	pages   *pageSet
	assets  *assets
	handler http.Handler
	live    liveState  // the event stream and metrics (ws.go)
	auth    *authState // auth.go
	basedir string     // Options.Basedir
	stats   statsCache
	jobs    JobSubmitter // Options.Jobs
}

// New returns a Server for m. It panics if the embedded templates do not
// parse, which is a build defect caught by the package's tests.
func New(m Master, opts Options) *Server {
	s := &Server{m: m, log: opts.Logger, hook: opts.ChangeHook}
	s.basedir = opts.Basedir
	s.jobs = opts.Jobs
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.auth = newAuthState(opts.Config, s.log)
	s.assets = newAssets()
	s.startLive()
	s.pages = mustParsePages(s.assets)
	s.handler = s.routes()
	return s
}

// Handler returns the handler for every page, asset and API endpoint.
// It is safe for concurrent use.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() http.Handler {
	api := http.NewServeMux()
	api.Handle("GET /api/v2/builders", s.api(s.listBuilders))
	api.Handle("GET /api/v2/builders/{builder}", s.api(s.getBuilder))
	api.Handle("GET /api/v2/builders/{builder}/builds", s.api(s.listBuilderBuilds))
	api.Handle("GET /api/v2/builders/{builder}/builds/{number}", s.api(s.getBuilderBuild))
	api.Handle("GET /api/v2/builds", s.api(s.listBuilds))
	api.Handle("GET /api/v2/builds/{build}", s.api(s.getBuild))
	api.Handle("POST /api/v2/builds/{build}", s.rpc(s.buildActions))
	api.Handle("GET /api/v2/builds/{build}/steps", s.api(s.listSteps))
	api.Handle("GET /api/v2/builds/{build}/properties", s.api(s.buildProperties))
	api.Handle("GET /api/v2/steps/{step}/logs", s.api(s.listLogs))
	api.Handle("GET /api/v2/logs/{log}", s.api(s.getLog))
	api.Handle("GET /api/v2/logs/{log}/contents", s.api(s.logContents))
	api.Handle("GET /api/v2/logs/{log}/raw", s.api(s.logRaw))
	api.Handle("GET /api/v2/workers", s.api(s.listWorkers))
	api.Handle("GET /api/v2/buildrequests", s.api(s.listRequests))
	api.Handle("GET /api/v2/buildrequests/{id}", s.api(s.getRequest))
	api.Handle("GET /api/v2/masters", s.api(s.listMasters))
	api.Handle("GET /api/v2/buildsets", s.api(s.listBuildsets))
	api.Handle("GET /api/v2/schedulers", s.api(s.listSchedulers))
	api.Handle("GET /api/v2/changesources", s.api(s.listChangeSources))
	api.Handle("GET /api/v2/buildsets/{id}", s.api(s.getBuildset))
	api.Handle("GET /api/v2/forceschedulers", s.api(s.listForceSchedulers))
	api.Handle("POST /api/v2/forceschedulers/{scheduler}", s.rpc(s.force))
	s.changeRoutes(api)

	mux := http.NewServeMux()
	s.jobRoutes(api, mux) // api_jobs.go
	s.pagesRoutes(api, mux)
	mux.Handle("/api/", jsonFallback(api))
	if s.hook != nil {
		mux.Handle("/change_hook/", s.hook)
	}
	mux.Handle("GET /static/", s.assets)
	mux.Handle("GET /{$}", s.page(s.homePage))
	mux.Handle("GET /builders/{builder}", s.page(s.builderPage))
	mux.Handle("GET /builders/{builder}/builds/{number}", s.page(s.buildPage))
	mux.Handle("GET /workers", s.page(s.workersPage))
	mux.Handle("GET /queue", s.page(s.queuePage))
	mux.Handle("GET /changes", s.page(s.changesPage))
	mux.Handle("GET /badges/{file}", s.page(s.badge))
	mux.Handle("GET /ws", http.HandlerFunc(s.serveWS))
	mux.Handle("GET /metrics", s.api(s.serveMetrics))
	s.authRoutes(api, mux) // auth_login.go
	mux.Handle("/", s.page(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "no page at %s", r.URL.Path)
	}))
	return s.recoverer(securityHeaders(s.authenticate(mux)))
}

// jsonFallback serves API requests with mux, but answers the requests mux
// has no route for (404, or 405 for a known path with the wrong method) with
// a JSON error instead of ServeMux's plain text, keeping its status and Allow
// header.
func jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, pattern := mux.Handler(r)
		if pattern != "" {
			// Through the mux again, which sets r's path values.
			mux.ServeHTTP(w, r)
			return
		}
		// Let ServeMux decide between 404 and 405 (and set Allow), but drop
		// its text body.
		c := &statusCapture{header: w.Header()}
		h.ServeHTTP(c, r)
		status := c.status
		switch {
		case status >= 300 && status < 400:
			// A redirect to the cleaned path (e.g. from a double slash):
			// Location is already set, the body does not matter.
			w.WriteHeader(status)
			return
		case status < 400:
			status = http.StatusNotFound
		}
		msg := fmt.Sprintf("no API endpoint %s %s", r.Method, r.URL.Path)
		if status == http.StatusMethodNotAllowed {
			msg = fmt.Sprintf("method %s not allowed on %s", r.Method, r.URL.Path)
		}
		writeJSON(w, status, errorBody{Error: msg})
	})
}

// statusCapture records the status a handler writes and discards its body.
type statusCapture struct {
	header http.Header
	status int
}

func (c *statusCapture) Header() http.Header         { return c.header }
func (c *statusCapture) Write(p []byte) (int, error) { return len(p), nil }
func (c *statusCapture) WriteHeader(status int) {
	if c.status == 0 {
		c.status = status
	}
}

// securityHeaders sets headers that make every response safer to render:
// the Content-Security-Policy forbids inline scripts and foreign origins,
// which the templates never need.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// recoverer turns a panic in a handler into a logged 500 so that one bad
// request does not take down the master. http.ErrAbortHandler is re-raised
// because net/http uses it to abort a response on purpose.
func (s *Server) recoverer(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			s.log.Error("webui: panic serving request", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			// The response may be half written; this is a best effort.
			http.Error(w, "internal server error", http.StatusInternalServerError)
		}()
		h.ServeHTTP(w, r)
	})
}
