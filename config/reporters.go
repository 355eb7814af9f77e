package config

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"go.starlark.net/starlark"
)

// Reporter is a declaration of http_reporter(), github_status(),
// gitea_status(), gitlab_status() or mail_reporter(): something the master tells about
// builds as they start and finish.
type Reporter struct {
	// Kind is one of ReporterKinds.
	Kind string
	// URL is where an "http" reporter posts, or the API base URL of a
	// commit-status service (no trailing "/").
	URL string
	// Headers are extra request headers of an "http" reporter.
	Headers map[string]string
	// SecretHeaders maps header names to the names of secrets (see
	// Config.Secret) sent as their values, for an "http" reporter.
	SecretHeaders map[string]string
	// Token names the secret sent as the API token of a status reporter.
	Token string
	// Context is the status context of a status reporter; the word
	// BUILDER in it stands for the builder's name.
	Context string
	// Builders, Tags and Branches restrict the builds reported: when not
	// empty, a build's builder must be listed, have one of the tags, or
	// have built one of the branches. All given restrictions apply.
	Builders, Tags, Branches []string
	// Mode is one of ReporterModes: which finished builds are reported.
	Mode string
	// Mail holds the settings of a "mail" reporter; nil for other kinds.
	Mail *Mail

	Pos Pos // position of the call
}

// ReporterKinds are the kinds of Reporter.
var ReporterKinds = []string{"http", "github", "gitea", "gitlab", "mail"}

// ReporterModes are the values of a reporter's mode=: "all" reports every
// build, "failing" failed ones, "problem" a failure after a success,
// "change" a result other than the builder's previous one, "warnings"
// results of warnings or worse, "exception" exceptions only.
var ReporterModes = []string{"all", "failing", "problem", "change", "warnings", "exception"}

var reporterCommonParams = []param{
	{name: "builders"},
	{name: "tags"},
	{name: "branches"},
	{name: "mode"},
}

var httpReporterParams = []param{
	{name: "url", required: true, positional: true},
	{name: "headers"},
}

var statusReporterParams = []param{
	{name: "token", required: true},
	{name: "base_url"},
	{name: "context"},
}

const reportersKey = "starforge/config.reporters"

// reporters returns the reporters declared so far in this load.
func (l *loader) reporters() []*Reporter {
	rs, _ := l.thread.Local(reportersKey).([]*Reporter)
	return rs
}

// builtinHTTPReporter implements http_reporter(url, headers={},
// builders=[], tags=[], branches=[], mode="all").
func builtinHTTPReporter(c *call) (starlark.Value, error) {
	r := &Reporter{Kind: "http", Pos: c.pos}
	r.URL = c.reporterURL("url", "")
	r.Headers, r.SecretHeaders = c.headers("headers")
	return c.addReporter(r)
}

func builtinGitHubStatus(c *call) (starlark.Value, error) {
	return c.statusReporter("github", "https://api.github.com")
}

func builtinGiteaStatus(c *call) (starlark.Value, error) {
	return c.statusReporter("gitea", "")
}

func builtinGitLabStatus(c *call) (starlark.Value, error) {
	return c.statusReporter("gitlab", "https://gitlab.com")
}

// statusReporter implements KIND_status(token, base_url=def,
// context="starforge/BUILDER", ...). An empty def makes base_url required.
func (c *call) statusReporter(kind, def string) (starlark.Value, error) {
	r := &Reporter{Kind: kind, Pos: c.pos}
	if _, ok := c.given("base_url"); !ok && def == "" {
		c.errorf("missing required argument base_url")
	}
	r.URL = strings.TrimSuffix(c.reporterURL("base_url", def), "/")
	r.Token = c.secretName("token")
	r.Context = c.nonEmptyStr("context", "starforge/BUILDER")
	return c.addReporter(r)
}

// addReporter reads the parameters every reporter has and records r.
func (c *call) addReporter(r *Reporter) (starlark.Value, error) {
	r.Builders = c.strList("builders")
	r.Tags = c.strList("tags")
	r.Branches = c.strList("branches")
	r.Mode = c.str("mode", cmp.Or(r.Mode, "all")) // a kind may preset its own default
	if !slices.Contains(ReporterModes, r.Mode) {
		c.argErrorf("mode", "unknown mode %q; want one of %s%s", r.Mode,
			strings.Join(ReporterModes, ", "), didYouMean(r.Mode, ReporterModes))
	}
	if c.ok() {
		c.l.thread.SetLocal(reportersKey, append(c.l.reporters(), r))
	}
	return starlark.None, nil
}

// reporterURL returns the http or https URL given for name.
func (c *call) reporterURL(name, def string) string {
	s := c.nonEmptyStr(name, def)
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		c.argErrorf(name, "want an http:// or https:// URL, got %q", s)
		return ""
	}
	return s
}

// headers returns the dict of header names to strings or secret("NAME")
// given for name, split into plain values and secret names.
func (c *call) headers(name string) (plain, secrets map[string]string) {
	v, ok := c.given(name)
	if !ok {
		return nil, nil
	}
	d, ok := v.(*starlark.Dict)
	if !ok {
		c.argErrorf(name, "want dict of strings or secrets, got %s", v.Type())
		return nil, nil
	}
	for _, kv := range d.Items() {
		k, ok := starlark.AsString(kv[0])
		if !ok || !validHeaderName(k) {
			c.argErrorf(name, "invalid header name %s", kv[0])
			continue
		}
		if rv, isRender := kv[1].(*renderValue); isRender {
			if s, isSecret := rv.r.(*secretRenderer); isSecret {
				if secrets == nil {
					secrets = map[string]string{}
				}
				secrets[k] = s.name
				continue
			}
		}
		s, ok := starlark.AsString(kv[1])
		if !ok {
			c.argErrorf(fmt.Sprintf("%s[%q]", name, k), "want string or secret(\"NAME\"), got %s", kv[1].Type())
			continue
		}
		if strings.ContainsAny(s, "\r\n\x00") {
			c.argErrorf(fmt.Sprintf("%s[%q]", name, k), "a header value must be one line without NUL, got %q", s)
			continue
		}
		if plain == nil {
			plain = map[string]string{}
		}
		plain[k] = s
	}
	return plain, secrets
}

// validHeaderName reports whether s is an HTTP token (RFC 9110).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
