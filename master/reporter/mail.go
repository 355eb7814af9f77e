package reporter

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/result"
	"github.com/starforge/starforge/master/store"
)

// logTailLines is how many lines of a failed step's log a mail quotes.
const logTailLines = 20

// maxSubject bounds a subject line, in runes.
const maxSubject = 200

// message is one mail to send, possibly several times.
type message struct {
	from string   // envelope sender
	to   []string // envelope recipients, each once
	data []byte   // the RFC 5322 message, CRLF line ends
}

// buildMail returns the mail that reporter r sends about the finished
// build in.
func (m *Manager) buildMail(cfg *config.Config, r *config.Reporter, in *info) (*message, error) {
	d, err := m.mailData(cfg, in)
	if err != nil {
		return nil, err
	}
	var subject, body bytes.Buffer
	if err := r.Mail.Subject.Execute(&subject, d); err != nil {
		return nil, fmt.Errorf("subject template: %w", err)
	}
	if err := r.Mail.Body.Execute(&body, d); err != nil {
		return nil, fmt.Errorf("body template: %w", err)
	}
	to := r.Mail.To
	if r.Mail.SendToBlamelist {
		for _, a := range d.Blamelist {
			if _, err := mail.ParseAddress(a); err == nil {
				to = append(slices.Clip(to), a)
			}
		}
	}
	return composeMail(r.Mail, to, subject.String(), body.String(), [][2]string{
		{"X-Starforge-Builder", d.Builder},
		{"X-Starforge-Result", d.Result},
	})
}

// mailData gathers what the templates show about the build in.
func (m *Manager) mailData(cfg *config.Config, in *info) (config.MailData, error) {
	ctx, b := m.ctx, in.b
	d := config.MailData{
		Title:       cmp.Or(cfg.Master.Title, "Starforge"),
		Builder:     b.BuilderName,
		BuildNumber: b.Number,
		BuildID:     b.ID,
		Result:      b.Results.String(),
		URL:         in.url,
		Revision:    in.revision,
		Repository:  in.repository,
		Reason:      in.reason,
		State:       b.StateString,
		Worker:      b.WorkerName,
		Properties:  make(map[string]any, len(in.props)),
	}
	if in.prev != result.None {
		d.PrevResult = in.prev.String()
	}
	if len(in.branches) > 0 {
		d.Branch = in.branches[0]
	}
	if !b.StartedAt.IsZero() && !b.CompleteAt.IsZero() {
		d.Duration = b.CompleteAt.Sub(b.StartedAt).Round(time.Second)
	}
	for k, p := range in.props {
		d.Properties[k] = p.Value
	}
	if b.BuildsetID != 0 {
		cs, err := m.opts.Store.BuildsetChanges(ctx, b.BuildsetID)
		if err != nil {
			return d, fmt.Errorf("changes: %w", err)
		}
		for _, c := range cs {
			title, _, _ := strings.Cut(c.Comments, "\n")
			d.Changes = append(d.Changes, config.MailChange{Revision: c.Revision, Author: c.Author,
				Branch: c.Branch, Revlink: c.Revlink, Comments: c.Comments, Title: title})
			if c.Author != "" && !slices.Contains(d.Blamelist, c.Author) {
				d.Blamelist = append(d.Blamelist, c.Author)
			}
		}
	}
	steps, err := m.opts.Store.ListSteps(ctx, b.ID)
	if err != nil {
		return d, fmt.Errorf("steps: %w", err)
	}
	for _, s := range steps {
		if s.Results != result.Failure && s.Results != result.Exception {
			continue
		}
		d.FailedSteps = append(d.FailedSteps, s.Name)
		if d.LogStep == "" {
			tail, err := m.logTail(ctx, s.ID)
			if err != nil {
				return d, fmt.Errorf("log of step %q: %w", s.Name, err)
			}
			if tail != "" {
				d.LogStep, d.LogTail = s.Name, tail
			}
		}
	}
	return d, nil
}

// logTail returns the last logTailLines lines of the step's first log,
// without the stream letters of a stdio log.
func (m *Manager) logTail(ctx context.Context, stepID int64) (string, error) {
	logs, err := m.opts.Store.ListLogs(ctx, stepID)
	if err != nil || len(logs) == 0 {
		return "", err
	}
	l := logs[0]
	var buf bytes.Buffer
	if _, err := m.opts.Store.ReadLog(ctx, l.ID, max(0, l.NumLines-logTailLines), -1, &buf); err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if l.Type == store.LogStdio {
		for i, s := range lines {
			if s != "" {
				lines[i] = s[1:]
			}
		}
	}
	return strings.TrimRight(strings.Join(lines, "\n"), "\n"), nil
}

// composeMail returns the message from mc's sender to the addresses to
// (deduplicated by address), with the given subject (made one line), body
// and extra headers.
func composeMail(mc *config.Mail, to []string, subject, body string, extra [][2]string) (*message, error) {
	from, err := mail.ParseAddress(mc.From)
	if err != nil {
		return nil, fmt.Errorf("from_addr %q: %w", mc.From, err)
	}
	msg := &message{from: from.Address}
	var toHdr []string
	for _, s := range to {
		a, err := mail.ParseAddress(s)
		if err != nil {
			return nil, fmt.Errorf("recipient %q: %w", s, err)
		}
		if !slices.Contains(msg.to, a.Address) {
			msg.to = append(msg.to, a.Address)
			toHdr = append(toHdr, a.String())
		}
	}
	if len(msg.to) == 0 {
		return nil, errors.New("no recipients")
	}
	subject = strings.Join(strings.Fields(subject), " ")
	if r := []rune(subject); len(r) > maxSubject {
		subject = string(r[:maxSubject-1]) + "…"
	}
	_, domain, _ := strings.Cut(from.Address, "@")
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	hdr("From", from.String())
	hdr("To", strings.Join(toHdr, ",\r\n "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", subject))
	hdr("Date", time.Now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+strconv.FormatInt(time.Now().UnixNano(), 36)+"."+randomHex(8)+"@"+cmp.Or(domain, "starforge.invalid")+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "quoted-printable")
	hdr("Auto-Submitted", "auto-generated") // RFC 3834: no vacation replies
	for _, kv := range extra {
		hdr(kv[0], mime.QEncoding.Encode("utf-8", strings.Join(strings.Fields(kv[1]), " ")))
	}
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := io.WriteString(qp, strings.ReplaceAll(body, "\r\n", "\n")); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	msg.data = b.Bytes()
	return msg, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// permanentError is an SMTP failure that trying again will not mend.
type permanentError struct{ error }

func (e permanentError) Unwrap() error { return e.error }

// sendMail delivers msg through mc's server: one attempt, reporting whether
// a failure is worth retrying (network errors and 4xx replies are; 5xx
// replies, TLS and certificate problems and a missing STARTTLS are not).
func (m *Manager) sendMail(cfg *config.Config, mc *config.Mail, msg *message) (retry bool, err error) {
	addr := net.JoinHostPort(mc.Host, strconv.Itoa(mc.Port))
	err = m.smtpSend(cfg, mc, addr, msg)
	if err == nil {
		return false, nil
	}
	err = fmt.Errorf("smtp %s: %w", addr, err)
	var perm permanentError
	var verify *tls.CertificateVerificationError
	var tp *textproto.Error
	var nerr net.Error
	switch {
	case errors.As(err, &perm), errors.As(err, &verify):
		return false, err
	case errors.As(err, &tp):
		return tp.Code/100 == 4, err
	case errors.As(err, &nerr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return true, err
	}
	return false, err
}

func (m *Manager) smtpSend(cfg *config.Config, mc *config.Mail, addr string, msg *message) error {
	var password string
	if mc.User != "" {
		pw, err := cfg.Secret(mc.Password)
		if err != nil {
			return permanentError{fmt.Errorf("smtp_password: %w", err)}
		}
		password = pw
	}
	tlsConfig := &tls.Config{ServerName: mc.Host, MinVersion: tls.VersionTLS12}
	if mc.CA != "" {
		pool, err := config.LoadCertPool(mc.CA)
		if err != nil {
			return permanentError{fmt.Errorf("smtp_ca %s: %w", mc.CA, err)}
		}
		tlsConfig.RootCAs = pool
	}
	ctx, cancel := context.WithTimeout(m.ctx, m.opts.SMTPTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	// net/smtp takes no context: the deadline and a close on shutdown
	// bound every exchange instead.
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if mc.TLS == "tls" {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return fmt.Errorf("TLS handshake (use_tls=\"tls\"): %w", err)
		}
		conn = tc
	}
	c, err := smtp.NewClient(conn, mc.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("greeting: %w", err)
	}
	defer c.Close()
	if err := c.Hello(helloName()); err != nil {
		return fmt.Errorf("EHLO: %w", err)
	}
	if mc.TLS == "starttls" {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanentError{errors.New(`the server does not offer STARTTLS, which use_tls="starttls" requires (use_tls="none" would send in clear text)`)}
		}
		if err := c.StartTLS(tlsConfig); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	}
	if mc.User != "" {
		ok, mechs := c.Extension("AUTH")
		if !ok {
			return permanentError{errors.New("the server does not offer AUTH, and smtp_user is set")}
		}
		auth, err := chooseAuth(mechs, mc.User, password, mc.Host)
		if err != nil {
			return permanentError{err}
		}
		if err := c.Auth(auth); err != nil {
			var tp *textproto.Error
			if !errors.As(err, &tp) {
				err = permanentError{err} // refused by our side, such as a password without TLS
			}
			return fmt.Errorf("AUTH as %q: %w", mc.User, err)
		}
	}
	if err := c.Mail(msg.from); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", msg.from, err)
	}
	for _, to := range msg.to {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg.data); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	// The message is accepted: a failing QUIT does not make it unsent.
	_ = c.Quit()
	return nil
}

// helloName is the name the master gives itself in EHLO.
func helloName() string {
	h, err := os.Hostname()
	if err != nil || h == "" || strings.ContainsAny(h, " \r\n") {
		return "localhost"
	}
	return h
}

// chooseAuth returns PLAIN or, failing that, LOGIN authentication, as the
// server's AUTH extension (mechs, such as "PLAIN LOGIN") offers.
func chooseAuth(mechs, user, password, host string) (smtp.Auth, error) {
	offered := strings.Fields(strings.ToUpper(mechs))
	switch {
	case slices.Contains(offered, "PLAIN"):
		return smtp.PlainAuth("", user, password, host), nil
	case slices.Contains(offered, "LOGIN"):
		return &loginAuth{user: user, password: password, host: host}, nil
	}
	return nil, fmt.Errorf("the server offers AUTH %s; Starforge speaks PLAIN and LOGIN", mechs)
}

// loginAuth is the LOGIN mechanism, which net/smtp lacks. Like PlainAuth,
// it sends the password only over TLS or to localhost.
type loginAuth struct{ user, password, host string }

func (a *loginAuth) Start(s *smtp.ServerInfo) (string, []byte, error) {
	if !s.TLS && s.Name != "localhost" && s.Name != "127.0.0.1" && s.Name != "::1" {
		return "", nil, errors.New("unencrypted connection: refusing to send the password")
	}
	if s.Name != a.host {
		return "", nil, errors.New("wrong host name")
	}
	return "LOGIN", nil, nil
}

func (a *loginAuth) Next(challenge []byte, more bool) ([]byte, error) {
	if !more {
		return nil, nil
	}
	switch strings.ToLower(strings.TrimSpace(string(challenge))) {
	case "username:":
		return []byte(a.user), nil
	case "password:":
		return []byte(a.password), nil
	}
	return nil, fmt.Errorf("AUTH LOGIN: unexpected challenge %q", challenge)
}
