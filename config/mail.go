package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/template"
	"time"

	"go.starlark.net/starlark"
)

// Mail holds the settings of a "mail" reporter (mail_reporter()), which
// sends an email about each build it reports and about each package job's
// end.
type Mail struct {
	// To are the recipients, as RFC 5322 addresses ("Name <a@b>" or "a@b").
	To []string
	// SendToBlamelist adds the authors of a build's changes that are email
	// addresses to the recipients (Buildbot's sendToInterestedUsers).
	SendToBlamelist bool
	// From is the sender, an RFC 5322 address.
	From string
	// Host and Port are the SMTP server's (Buildbot's relayhost, smtpPort).
	Host string
	Port int
	// User and Password (the name of a secret, see Config.Secret) log in
	// with AUTH PLAIN or LOGIN; no login when User is "".
	User, Password string
	// TLS is one of MailTLSModes: "starttls" (the server must offer it),
	// "tls" (implicit TLS from the first byte, usually port 465) or "none".
	TLS string
	// CA is the path of a PEM file of certificates to trust instead of the
	// system's roots; "" for the system's.
	CA string
	// Subject and Body are the message's templates, parsed and checked
	// against MailData at load; SubjectText and BodyText their sources.
	Subject, Body         *template.Template
	SubjectText, BodyText string
}

// MailTLSModes are the values of mail_reporter(use_tls=).
var MailTLSModes = []string{"starttls", "tls", "none"}

// MailData is what the subject and body templates of a mail_reporter()
// see: {{.Builder}}, {{.Result}} and so on.
type MailData struct {
	Title       string        // the master's title
	Builder     string        // the builder's name
	BuildNumber int           // the build's number within its builder
	BuildID     int64         // the build's id
	Result      string        // "success", "warnings", "failure", "exception", ...
	PrevResult  string        // the builder's previous finished build's result, "" if none
	URL         string        // the build's page; "" without master(url=)
	Branch      string        // the branch built, "" if none
	Revision    string        // the revision built (got_revision if set)
	Repository  string        // the repository built, "" if none
	Reason      string        // why the build was requested
	State       string        // the build's last state string, such as "failed compile"
	Worker      string        // the worker that ran it
	Duration    time.Duration // from start to end
	Blamelist   []string      // authors of the build's changes, each once
	Changes     []MailChange  // the changes of the build's buildset
	FailedSteps []string      // names of the steps that failed
	LogStep     string        // the step LogTail comes from, "" if none
	LogTail     string        // the last lines of that step's first log
	Properties  map[string]any
}

// MailChange is one change of a build, as MailData lists it.
type MailChange struct {
	Revision, Author, Branch, Revlink string
	Comments                          string // the full message
	Title                             string // its first line
}

// DefaultMailSubject and DefaultMailBody are mail_reporter()'s default
// templates.
const (
	DefaultMailSubject = `Starforge: {{.Result}} in {{.Builder}}{{if .Branch}} on {{.Branch}}{{end}}`
	DefaultMailBody    = `The build {{.Builder}} #{{.BuildNumber}} finished with result {{.Result}}{{if .PrevResult}} (previous build: {{.PrevResult}}){{end}}.
{{if .URL}}
Build page: {{.URL}}{{end}}
Builder:    {{.Builder}}
Worker:     {{.Worker}}
{{- if .Branch}}
Branch:     {{.Branch}}{{end}}
{{- if .Revision}}
Revision:   {{.Revision}}{{end}}
Duration:   {{.Duration}}
Reason:     {{.Reason}}
{{- if .State}}
State:      {{.State}}{{end}}
{{- if .FailedSteps}}
Failed:     {{join .FailedSteps ", "}}{{end}}
{{- if .Blamelist}}
Blamelist:  {{join .Blamelist ", "}}{{end}}
{{- if .Changes}}

Changes:
{{- range .Changes}}
  {{.Revision}}  {{.Author}}  {{.Title}}{{end}}{{end}}
{{- if .LogTail}}

The end of the log of step {{.LogStep}}:

{{.LogTail}}{{end}}

-- 
{{.Title}}
`
)

// MailFuncs are the functions mail templates may call besides the
// text/template builtins: join (strings.Join) and upper, lower.
var MailFuncs = template.FuncMap{
	"join":  strings.Join,
	"upper": strings.ToUpper,
	"lower": strings.ToLower,
}

var mailReporterParams = []param{
	{name: "to"},
	{name: "from_addr", required: true},
	{name: "smtp_host", required: true},
	{name: "smtp_port"},
	{name: "smtp_user"},
	{name: "smtp_password"},
	{name: "use_tls"},
	{name: "smtp_ca"},
	{name: "send_to_blamelist"},
	{name: "subject"},
	{name: "body"},
}

// builtinMailReporter implements mail_reporter(to=[], from_addr, smtp_host,
// smtp_port=587, smtp_user=None, smtp_password=None, use_tls="starttls",
// smtp_ca=None, send_to_blamelist=False, subject=..., body=..., builders=[],
// tags=[], branches=[], mode="failing").
func builtinMailReporter(c *call) (starlark.Value, error) {
	m := &Mail{}
	r := &Reporter{Kind: "mail", Mode: "failing", Mail: m, Pos: c.pos}
	m.To = c.strList("to")
	for i, a := range m.To {
		if _, err := mail.ParseAddress(a); err != nil {
			c.argErrorf(fmt.Sprintf("to[%d]", i), "%q is not an email address: %v", a, err)
		}
	}
	m.SendToBlamelist = c.bool("send_to_blamelist", false)
	if len(m.To) == 0 && !m.SendToBlamelist && c.ok() {
		c.argErrorf("to", "no recipients: give at least one address, or send_to_blamelist=True")
	}
	if m.From = c.nonEmptyStr("from_addr", ""); m.From != "" {
		if _, err := mail.ParseAddress(m.From); err != nil {
			c.argErrorf("from_addr", "%q is not an email address: %v", m.From, err)
		}
	}
	m.Host = c.nonEmptyStr("smtp_host", "")
	if strings.ContainsAny(m.Host, ":/ ") {
		c.argErrorf("smtp_host", "want a host name or address without port or scheme, got %q (the port is smtp_port=)", m.Host)
	}
	if m.Port = c.int("smtp_port", 587); m.Port < 1 || m.Port > 65535 {
		c.argErrorf("smtp_port", "%d is not a TCP port", m.Port)
	}
	m.User = c.str("smtp_user", "")
	m.Password = c.secretName("smtp_password")
	if _, pw := c.given("smtp_password"); (m.User == "") == pw {
		c.errorf("smtp_user and smtp_password go together: give both or neither")
	}
	m.TLS = c.str("use_tls", "starttls")
	if !slices.Contains(MailTLSModes, m.TLS) {
		c.argErrorf("use_tls", "unknown mode %q; want one of %s%s", m.TLS,
			strings.Join(MailTLSModes, ", "), didYouMean(m.TLS, MailTLSModes))
	}
	if given := c.nonEmptyStr("smtp_ca", ""); given != "" {
		p := given
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.l.baseDir(), p)
		}
		m.CA = filepath.Clean(p)
		if _, err := LoadCertPool(m.CA); err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			c.argErrorf("smtp_ca", "%q: %v", given, err)
		}
	}
	m.SubjectText = c.str("subject", DefaultMailSubject)
	m.BodyText = c.str("body", DefaultMailBody)
	m.Subject = c.mailTemplate("subject", m.SubjectText)
	m.Body = c.mailTemplate("body", m.BodyText)
	return c.addReporter(r)
}

// mailTemplate parses text as the template for parameter name and runs it
// once on a sample MailData, so that a misspelt field is a config error
// rather than a mail that never leaves.
func (c *call) mailTemplate(name, text string) *template.Template {
	t, err := template.New(name).Funcs(MailFuncs).Parse(text)
	if err != nil {
		c.argErrorf(name, "%v", err)
		return nil
	}
	if err := t.Execute(discard{}, SampleMailData()); err != nil {
		c.argErrorf(name, "%v", err)
		return nil
	}
	return t
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// SampleMailData returns a MailData with every field set, for checking
// templates and for documentation.
func SampleMailData() MailData {
	return MailData{
		Title: "Starforge", Builder: "app", BuildNumber: 7, BuildID: 42,
		Result: "failure", PrevResult: "success",
		URL: "https://ci.example.org/builders/1/builds/7", Branch: "main",
		Revision: "0123abcd", Repository: "https://git.example.org/app.git",
		Reason: "new commits", State: "failed test", Worker: "w1",
		Duration:  90 * time.Second,
		Blamelist: []string{"Alice <alice@example.org>"},
		Changes: []MailChange{{Revision: "0123abcd", Author: "Alice <alice@example.org>", Branch: "main",
			Comments: "fix the frobnicator\n\nlonger text", Title: "fix the frobnicator"}},
		FailedSteps: []string{"test"}, LogStep: "test", LogTail: "FAIL: TestFrob",
		Properties: map[string]any{"branch": "main"},
	}
}

// LoadCertPool reads a PEM file of certificates into a pool. A file
// without any certificate is an error.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no PEM certificate in it")
	}
	return pool, nil
}
