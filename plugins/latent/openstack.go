package latent

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/compute/v2/servers"
	"github.com/gophercloud/gophercloud/v2/pagination"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

// OpenStackMetaInstance is the server metadata key that holds an
// instance's name (the server's name too): Stop, Check and List find
// servers by it, so that servers named alike by hand are left alone.
const OpenStackMetaInstance = "starforge_instance"

// OpenStack starts each instance as an OpenStack (nova) server from
// Image and Flavor, named by the instance and with user data that starts
// the worker; Stop deletes it.
//
// Its fields must not change once it is in use; its methods are safe for
// concurrent use (the gophercloud client is).
type OpenStack struct {
	// Compute is a nova client; NewOpenStack makes one from a
	// openstack_driver(...) declaration.
	Compute        *gophercloud.ServiceClient
	Image, Flavor  string // ids, required
	Networks       []string
	SecurityGroups []string
	Metadata       map[string]string // more server metadata
	// UserData is a text/template over latent.Instance; "" means
	// DefaultUserData.
	UserData string
}

// NewOpenStack authenticates with Keystone as c says (password is the
// value of its password secret) and returns the driver with a compute
// client for c's region.
func NewOpenStack(ctx context.Context, c *config.OpenStackDriver, password string) (*OpenStack, error) {
	provider, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{
		IdentityEndpoint: c.AuthURL,
		Username:         c.Username,
		Password:         password,
		DomainName:       c.Domain,
		TenantName:       c.Project,
		AllowReauth:      true,
	})
	if err != nil {
		return nil, fmt.Errorf("openstack: authenticate at %s: %w", c.AuthURL, err)
	}
	compute, err := openstack.NewComputeV2(provider, gophercloud.EndpointOpts{Region: c.Region})
	if err != nil {
		return nil, fmt.Errorf("openstack: compute endpoint: %w", err)
	}
	return &OpenStack{
		Compute: compute, Image: c.Image, Flavor: c.Flavor, Networks: c.Networks,
		SecurityGroups: c.SecurityGroups, Metadata: c.Metadata, UserData: c.UserData,
	}, nil
}

// Start creates the server; it returns once nova has accepted it.
func (o *OpenStack) Start(ctx context.Context, inst latent.Instance) error {
	ud, err := userData(o.UserData, inst)
	if err != nil {
		return fmt.Errorf("openstack: instance %s: %w", inst.Name, err)
	}
	meta := map[string]string{OpenStackMetaInstance: inst.Name}
	for k, v := range o.Metadata {
		if k != OpenStackMetaInstance {
			meta[k] = v
		}
	}
	var nets []servers.Network
	for _, n := range o.Networks {
		nets = append(nets, servers.Network{UUID: n})
	}
	opts := servers.CreateOpts{
		Name: inst.Name, ImageRef: o.Image, FlavorRef: o.Flavor,
		UserData: []byte(ud), Metadata: meta, SecurityGroups: o.SecurityGroups,
	}
	if nets != nil {
		opts.Networks = nets
	}
	if _, err := servers.Create(ctx, o.Compute, opts, nil).Extract(); err != nil {
		return fmt.Errorf("openstack: instance %s: create server: %w", inst.Name, err)
	}
	return nil
}

// find returns the servers named with prefix (or exactly name) that
// carry the instance metadata.
func (o *OpenStack) find(ctx context.Context, prefix string, exact bool) ([]servers.Server, error) {
	re := "^" + regexp.QuoteMeta(prefix)
	if exact {
		re += "$"
	}
	var found []servers.Server
	err := servers.List(o.Compute, servers.ListOpts{Name: re}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ss, err := servers.ExtractServers(p)
		if err != nil {
			return false, err
		}
		for _, s := range ss {
			n := s.Metadata[OpenStackMetaInstance]
			if n == s.Name && (n == prefix || !exact && strings.HasPrefix(n, prefix)) {
				found = append(found, s)
			}
		}
		return true, nil
	})
	return found, err
}

// Stop deletes the servers of the instance. None is not an error.
func (o *OpenStack) Stop(ctx context.Context, name string) error {
	found, err := o.find(ctx, name, true)
	if err != nil {
		return fmt.Errorf("openstack: stop %s: list servers: %w", name, err)
	}
	for _, s := range found {
		if err := servers.Delete(ctx, o.Compute, s.ID).ExtractErr(); err != nil && !gophercloud.ResponseCodeIs(err, 404) {
			return fmt.Errorf("openstack: stop %s: delete server %s: %w", name, s.ID, err)
		}
	}
	return nil
}

// Check returns nil while the instance's server is building or active,
// and an error wrapping latent.ErrGone (with nova's fault, if any) once
// it is not.
func (o *OpenStack) Check(ctx context.Context, name string) error {
	found, err := o.find(ctx, name, true)
	if err != nil {
		return fmt.Errorf("openstack: check %s: %w", name, err)
	}
	if len(found) == 0 {
		return fmt.Errorf("openstack: instance %s: %w: no such server", name, latent.ErrGone)
	}
	for _, s := range found {
		if s.Status == "BUILD" || s.Status == "ACTIVE" {
			return nil
		}
	}
	s := found[0]
	fault := ""
	if s.Fault.Message != "" {
		fault = ": " + s.Fault.Message
	}
	return fmt.Errorf("openstack: instance %s (server %s): %w: status %s%s", name, s.ID, latent.ErrGone, s.Status, fault)
}

// List returns the names of the instances' servers whose names start
// with prefix, whatever their state (Stop deletes them all).
func (o *OpenStack) List(ctx context.Context, prefix string) ([]string, error) {
	found, err := o.find(ctx, prefix, false)
	if err != nil {
		return nil, fmt.Errorf("openstack: list %s*: %w", prefix, err)
	}
	seen := map[string]bool{}
	var names []string
	for _, s := range found {
		if !seen[s.Name] && s.Status != "DELETED" {
			seen[s.Name] = true
			names = append(names, s.Name)
		}
	}
	sort.Strings(names)
	return names, nil
}

var (
	_ latent.Driver  = (*OpenStack)(nil)
	_ latent.Checker = (*OpenStack)(nil)
	_ latent.Lister  = (*OpenStack)(nil)
)
