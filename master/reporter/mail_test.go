package reporter

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/internal/testenv"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

const smtpPassword = "sm7p-pa55word"

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "starforge test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pk}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// smtpd is a running testdata/smtpd.py.
type smtpd struct {
	port int
	dir  string // where it saves messages and auth.log
}

// startSMTPD runs testdata/smtpd.py with args and waits for its port.
func startSMTPD(t *testing.T, args ...string) *smtpd {
	t.Helper()
	python := testenv.PythonModule(t, "aiosmtpd", "python3-aiosmtpd")
	s := &smtpd{dir: t.TempDir()}
	cmd := exec.Command(python, append([]string{"testdata/smtpd.py", "--dir", s.dir}, args...)...)
	stderr := &testenv.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("smtpd.py stderr:\n%s", stderr)
		}
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("smtpd.py printed no port (%v); stderr:\n%s", err, stderr)
	}
	if s.port, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatalf("smtpd.py: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, out) }()
	return s
}

// received is one message smtpd.py saved.
type received struct {
	MailFrom string   `json:"mail_from"`
	RcptTos  []string `json:"rcpt_tos"`
	TLS      bool     `json:"tls"`
	Login    string   `json:"login"`
	Data     string   `json:"data"`
}

// messages returns what the server has received so far, in order.
func (s *smtpd) messages(t *testing.T) []received {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	var out []received
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r received
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, r)
	}
	return out
}

func (s *smtpd) authLog(t *testing.T) []string {
	b, err := os.ReadFile(filepath.Join(s.dir, "auth.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// loadReporters loads a master.star of src and returns its reporters,
// with secrets_env("SFTEST_") for the SMTP password.
func loadReporters(t *testing.T, src string) *config.Config {
	t.Helper()
	t.Setenv("SFTEST_smtp", smtpPassword)
	file := filepath.Join(t.TempDir(), "master.star")
	if err := os.WriteFile(file, []byte("secrets_env(\"SFTEST_\")\n"+src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// failedBuild stores a build of f's builder from a change by Bob that
// fails in step "test", with a log.
func (f *fixture) failedBuild(t *testing.T) store.Build {
	ctx := context.Background()
	cs, err := f.st.AddChanges(ctx, []store.Change{{Author: "Bob <bob@example.org>", Comments: "frob the widget\n\nbecause", Branch: "main",
		Revision: "c0ffee", Repository: "https://git.example.org/app.git"}})
	if err != nil {
		t.Fatal(err)
	}
	_, reqs, err := f.st.AddBuildset(ctx, store.NewBuildset{Reason: "new commits",
		SourceStamps: []store.SourceStamp{{Repository: "https://git.example.org/app.git", Branch: "main", Revision: "c0ffee"}},
		BuilderIDs:   []int64{f.builder}, ChangeIDs: []int64{cs[0].ID}})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now().Add(-83 * time.Second)
	b, err := f.st.AddBuild(ctx, store.NewBuild{BuilderID: f.builder, RequestID: reqs[0].ID, StartedAt: start})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"checkout", "test"} {
		st, err := f.st.AddStep(ctx, b.ID, i, name)
		if err != nil {
			t.Fatal(err)
		}
		res := result.Success
		if name == "test" {
			res = result.Failure
			l, err := f.st.AddLog(ctx, st.ID, "stdio", store.LogStdio)
			if err != nil {
				t.Fatal(err)
			}
			var lines strings.Builder
			for n := 1; n <= 30; n++ {
				fmt.Fprintf(&lines, "oline %d\n", n)
			}
			lines.WriteString("eFAIL: TestWidget (ünïcode)\n")
			if _, _, err := f.st.AppendLog(ctx, l.ID, []byte(lines.String())); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.st.FinishStep(ctx, st.ID, res, name+" done", time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.st.FinishBuild(ctx, b.ID, result.Failure, "failed test", start.Add(83*time.Second)); err != nil {
		t.Fatal(err)
	}
	fin, err := f.st.GetBuild(ctx, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	return fin
}

// parse reads a received message, decoding its subject and body.
func parse(t *testing.T, r received) (*mail.Message, string, string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(r.Data))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, r.Data)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	return msg, subject, strings.ReplaceAll(string(body), "\r\n", "\n")
}

func TestMailThroughSMTPServer(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	srv := startSMTPD(t, "--cert", cert, "--key", key, "--user", "ci", "--password", smtpPassword)
	f := newFixture(t, "")
	cfg := loadReporters(t, fmt.Sprintf(`
master(title = "Test farm", url = "http://sf.example/")
mail_reporter(
    to = ["Ops Team <ops@example.org>", "dev@example.org"],
    from_addr = "Starforge <ci@example.org>",
    smtp_host = "127.0.0.1", smtp_port = %d,
    smtp_user = "ci", smtp_password = secret("smtp"),
    smtp_ca = %q,
    send_to_blamelist = True,
)`, srv.port, cert))
	f.cfg = cfg
	m := f.manager(Options{})

	_, ok := f.build("https://git.example.org/app.git", result.Success) // not reported: mode "failing"
	m.BuildFinished(ok)
	b := f.failedBuild(t)
	m.BuildStarted(b) // never mailed
	m.BuildFinished(b)
	flush(t, m)

	got := srv.messages(t)
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1; log:\n%s", len(got), f.log)
	}
	r := got[0]
	if !r.TLS || r.Login != "ci" {
		t.Errorf("tls %v, login %q: want STARTTLS and AUTH as ci", r.TLS, r.Login)
	}
	if a := srv.authLog(t); len(a) == 0 || a[0] != "PLAIN" || a[1] != "ok" || a[2] != "tls=True" {
		t.Errorf("auth log %q, want one PLAIN ok over TLS", a)
	}
	if r.MailFrom != "ci@example.org" || !slices.Equal(r.RcptTos, []string{"ops@example.org", "dev@example.org", "bob@example.org"}) {
		t.Errorf("envelope from %q to %q", r.MailFrom, r.RcptTos)
	}
	msg, subject, body := parse(t, r)
	if want := "Starforge: failure in app on main"; subject != want {
		t.Errorf("subject %q, want %q", subject, want)
	}
	for _, h := range []string{"Date", "Message-ID", "From", "To"} {
		if msg.Header.Get(h) == "" {
			t.Errorf("no %s header:\n%s", h, r.Data)
		}
	}
	if _, err := msg.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if msg.Header.Get("MIME-Version") != "1.0" || !strings.HasPrefix(msg.Header.Get("Content-Type"), "text/plain; charset=utf-8") {
		t.Errorf("MIME headers: %v", msg.Header)
	}
	if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 3 || to[0].Name != "Ops Team" {
		t.Errorf("To: %v, %v", to, err)
	}
	for _, want := range []string{
		fmt.Sprintf("The build app #%d finished with result failure (previous build: success).", b.Number),
		fmt.Sprintf("Build page: http://sf.example/builders/%d/builds/%d", f.builder, b.Number),
		"Branch:     main",
		"Revision:   c0ffee",
		"Duration:   1m23s",
		"Reason:     new commits",
		"Failed:     test",
		"Blamelist:  Bob <bob@example.org>",
		"c0ffee  Bob <bob@example.org>  frob the widget",
		"The end of the log of step test:",
		"line 30\nFAIL: TestWidget (ünïcode)",
		"-- \nTest farm",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "line 11\n") || !strings.Contains(body, "line 12\n") {
		t.Errorf("log tail is not the last %d lines:\n%s", logTailLines, body)
	}
	if strings.Contains(f.log.String(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", f.log)
	}
}

func TestMailWrongPassword(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	srv := startSMTPD(t, "--cert", cert, "--key", key, "--user", "ci", "--password", "another-one")
	f := newFixture(t, "")
	f.cfg = loadReporters(t, fmt.Sprintf(`
mail_reporter(to = ["ops@example.org"], from_addr = "ci@example.org", smtp_host = "127.0.0.1", smtp_port = %d,
    smtp_user = "ci", smtp_password = secret("smtp"), smtp_ca = %q)`, srv.port, cert))
	m := f.manager(Options{Attempts: 3})
	m.BuildFinished(f.failedBuild(t))
	flush(t, m)

	if n := len(srv.messages(t)); n != 0 {
		t.Errorf("server received %d messages", n)
	}
	// 535 is permanent (RFC 5321 5yz): tried once, not three times.
	if a := srv.authLog(t); len(a) != 3 || a[1] != "refused" {
		t.Errorf("auth log %q, want one refused attempt", a)
	}
	log := f.log.String()
	for _, want := range []string{"level=ERROR", "reporter failed", "reporter=mail", `AUTH as \"ci\"`, "535"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "will retry") || strings.Contains(log, smtpPassword) {
		t.Errorf("retried a permanent failure, or logged the password:\n%s", log)
	}
}

func TestMailNoSTARTTLS(t *testing.T) {
	srv := startSMTPD(t) // no certificate: no STARTTLS
	f := newFixture(t, "")
	f.cfg = loadReporters(t, fmt.Sprintf(`
mail_reporter(to = ["ops@example.org"], from_addr = "ci@example.org", smtp_host = "127.0.0.1", smtp_port = %d)
mail_reporter(to = ["plain@example.org"], from_addr = "ci@example.org", smtp_host = "127.0.0.1", smtp_port = %d, use_tls = "none")
`, srv.port, srv.port))
	m := f.manager(Options{})
	m.BuildFinished(f.failedBuild(t))
	flush(t, m)

	log := f.log.String()
	if !strings.Contains(log, `the server does not offer STARTTLS, which use_tls=\"starttls\" requires`) || strings.Contains(log, "will retry") {
		t.Errorf("want one clear STARTTLS error, not retried; log:\n%s", log)
	}
	got := srv.messages(t)
	if len(got) != 1 || got[0].TLS || !slices.Equal(got[0].RcptTos, []string{"plain@example.org"}) {
		t.Errorf("received %+v, want only the use_tls=\"none\" reporter's message", got)
	}
}

// TestMailRetry checks that a server that cannot be reached is tried
// Attempts times.
func TestMailRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	accepted := make(chan struct{}, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- struct{}{}
			c.Close() // hang up before the greeting
		}
	}()
	t.Cleanup(func() { ln.Close() })
	f := newFixture(t, "")
	f.cfg = loadReporters(t, fmt.Sprintf(`
mail_reporter(to = ["ops@example.org"], from_addr = "ci@example.org", smtp_host = "127.0.0.1", smtp_port = %d)`, port))
	m := f.manager(Options{Attempts: 3})
	m.BuildFinished(f.failedBuild(t))
	flush(t, m)
	if n := len(accepted); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
	log := f.log.String()
	if strings.Count(log, "will retry") != 2 || !strings.Contains(log, "gave up after 3 attempts") {
		t.Errorf("log:\n%s", log)
	}
}

func TestComposeMail(t *testing.T) {
	mc := &config.Mail{From: "Stärforge <ci@example.org>"}
	msg, err := composeMail(mc, []string{"a@example.org", "A <a@example.org>", "b@example.org"},
		"  résumé\nof\tthe build ", "line.\n.dot line\nlong "+strings.Repeat("x", 100)+"\n", [][2]string{{"X-Starforge-Builder", "app\r\nBcc: evil@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(msg.to, []string{"a@example.org", "b@example.org"}) || msg.from != "ci@example.org" {
		t.Errorf("envelope %q -> %q", msg.from, msg.to)
	}
	data := string(msg.data)
	for _, line := range strings.Split(data, "\r\n") {
		if len(line) > 78 || strings.Contains(line, "\n") {
			t.Errorf("line too long or with a bare LF: %q", line)
		}
	}
	if strings.Contains(data, "\r\nBcc:") {
		t.Errorf("header injection:\n%s", data)
	}
	m, subject, body := parse(t, received{Data: data})
	if subject != "résumé of the build" || m.Header.Get("Auto-Submitted") != "auto-generated" {
		t.Errorf("subject %q, headers %v", subject, m.Header)
	}
	if !strings.Contains(body, "\n.dot line\nlong "+strings.Repeat("x", 100)) {
		t.Errorf("body %q", body)
	}
}

func TestMailTemplates(t *testing.T) {
	d := config.SampleMailData()
	for _, tc := range []struct {
		name, subject, body string
		want                []string // in the subject, then the body
	}{
		{"defaults", "", "", []string{"Starforge: failure in app on main",
			"The build app #7 finished with result failure (previous build: success).",
			"Build page: https://ci.example.org/builders/1/builds/7", "Duration:   1m30s",
			"Failed:     test", "0123abcd  Alice <alice@example.org>  fix the frobnicator", "FAIL: TestFrob"}},
		{"custom", `[{{.Title}}] {{.Builder}} #{{.BuildNumber}} {{upper .Result}}`,
			`{{range .Changes}}{{.Revision}} by {{.Author}}{{end}} on {{.Worker}}; {{index .Properties "branch"}}`,
			[]string{"[Starforge] app #7 FAILURE", "0123abcd by Alice <alice@example.org> on w1; main"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := ""
			if tc.subject != "" {
				args = fmt.Sprintf(", subject = %q, body = %q", tc.subject, tc.body)
			}
			cfg := loadReporters(t, `mail_reporter(to = ["a@example.org"], from_addr = "ci@example.org", smtp_host = "h"`+args+`)`)
			mc := cfg.Reporters[0].Mail
			var s, b strings.Builder
			if err := mc.Subject.Execute(&s, d); err != nil {
				t.Fatal(err)
			}
			if err := mc.Body.Execute(&b, d); err != nil {
				t.Fatal(err)
			}
			if s.String() != tc.want[0] {
				t.Errorf("subject %q, want %q", s.String(), tc.want[0])
			}
			for _, w := range tc.want[1:] {
				if !strings.Contains(b.String(), w) {
					t.Errorf("body lacks %q:\n%s", w, b.String())
				}
			}
		})
	}
}
