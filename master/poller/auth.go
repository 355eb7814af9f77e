package poller

import (
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

type transportAuth = transport.AuthMethod

// sshDialTimeout bounds connecting to an ssh server: go-git's ssh dial
// does not follow the poll's context.
const sshDialTimeout = 30 * time.Second

// auth returns how to authenticate to the repository, reading the secrets
// it needs now, so that a secret changed on disk is used at the next poll.
// It returns nil for repositories that need nothing.
func (p *Poller) auth() (transportAuth, error) {
	a := p.cfg.Auth
	ep, err := transport.NewEndpoint(p.cfg.Repo)
	if err != nil {
		return nil, fmt.Errorf("git poller %s: repo %s: %w", p.cfg.Name, p.cfg.Repo, err)
	}
	lookup := func(name string) (string, error) {
		if p.secret == nil {
			return "", fmt.Errorf("git poller %s: secret %s: no secret providers", p.cfg.Name, name)
		}
		v, err := p.secret(name)
		if err != nil {
			return "", fmt.Errorf("git poller %s: %w", p.cfg.Name, err)
		}
		return v, nil
	}
	switch {
	case a.TokenSecret != "":
		token, err := lookup(a.TokenSecret)
		if err != nil {
			return nil, err
		}
		return &http.BasicAuth{Username: a.Username, Password: token}, nil
	case ep.Protocol != "ssh":
		return nil, nil
	}

	user := ep.User
	if user == "" {
		user = "git"
	}
	var m gitssh.AuthMethod
	switch {
	case a.SSHKey != "":
		k, err := gitssh.NewPublicKeysFromFile(user, a.SSHKey, "")
		if err != nil {
			return nil, fmt.Errorf("git poller %s: ssh key %s: %w", p.cfg.Name, a.SSHKey, err)
		}
		m = k
	case a.SSHKeySecret != "":
		pem, err := lookup(a.SSHKeySecret)
		if err != nil {
			return nil, err
		}
		k, err := gitssh.NewPublicKeys(user, []byte(pem), "")
		if err != nil {
			return nil, fmt.Errorf("git poller %s: ssh key in secret %s: %w", p.cfg.Name, a.SSHKeySecret, err)
		}
		m = k
	default:
		k, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, fmt.Errorf("git poller %s: no auth ssh_key given and no SSH agent to ask: %w", p.cfg.Name, err)
		}
		m = k
	}
	// The host key algorithms must be those known_hosts has for the host:
	// left to their defaults, the server may offer a key of another type
	// and fail verification.
	var files []string
	if a.KnownHosts != "" {
		files = []string{a.KnownHosts}
	}
	db, err := gitssh.NewKnownHostsDb(files...)
	if err != nil {
		return nil, fmt.Errorf("git poller %s: known_hosts: %w", p.cfg.Name, err)
	}
	port := ep.Port
	if port <= 0 {
		port = gitssh.DefaultPort
	}
	helper := gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   db.HostKeyCallback(),
		HostKeyAlgorithms: db.HostKeyAlgorithms(net.JoinHostPort(ep.Host, strconv.Itoa(port))),
	}
	switch k := m.(type) {
	case *gitssh.PublicKeys:
		k.HostKeyCallbackHelper = helper
	case *gitssh.PublicKeysCallback:
		k.HostKeyCallbackHelper = helper
	}
	return sshWithTimeout{m}, nil
}

// sshWithTimeout bounds the ssh dial, which the poll's context does not.
type sshWithTimeout struct{ gitssh.AuthMethod }

func (a sshWithTimeout) ClientConfig() (*ssh.ClientConfig, error) {
	c, err := a.AuthMethod.ClientConfig()
	if c != nil {
		c.Timeout = sshDialTimeout
	}
	return c, err
}
