package config

import (
	"net/url"

	"go.starlark.net/starlark"
)

// OpenStackDriver is the setting of an openstack_driver(...): each
// instance is a nova server (plugins/latent.OpenStack).
type OpenStackDriver struct {
	AuthURL        string // Keystone, e.g. https://keystone.example.org:5000/v3
	Username       string
	Password       string // the name of the secret holding the password
	Project        string
	Domain         string
	Region         string
	Image          string // image id
	Flavor         string // flavor id
	Networks       []string
	SecurityGroups []string
	Metadata       map[string]string
	UserData       string // a text/template; "" for the default script
}

var openStackDriverParams = []param{
	{name: "auth_url", required: true},
	{name: "username", required: true},
	{name: "password", required: true},
	{name: "project", required: true},
	{name: "image", required: true},
	{name: "flavor", required: true},
	{name: "domain"},
	{name: "region"},
	{name: "networks"},
	{name: "security_groups"},
	{name: "metadata"},
	{name: "user_data"},
}

// builtinOpenStackDriver implements openstack_driver(auth_url=,
// username=, password=secret(), project=, image=, flavor=,
// domain="Default", region="", networks=[], security_groups=[],
// metadata={}, user_data="").
func builtinOpenStackDriver(c *call) (starlark.Value, error) {
	o := &OpenStackDriver{
		AuthURL:        c.nonEmptyStr("auth_url", ""),
		Username:       c.nonEmptyStr("username", ""),
		Password:       c.secretName("password"),
		Project:        c.nonEmptyStr("project", ""),
		Image:          c.nonEmptyStr("image", ""),
		Flavor:         c.nonEmptyStr("flavor", ""),
		Domain:         c.nonEmptyStr("domain", "Default"),
		Region:         c.str("region", ""),
		Networks:       c.strList("networks"),
		SecurityGroups: c.strList("security_groups"),
		Metadata:       c.strDict("metadata"),
		UserData:       c.str("user_data", ""),
	}
	if o.AuthURL != "" {
		if u, err := url.Parse(o.AuthURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			c.argErrorf("auth_url", "want an http:// or https:// URL such as \"https://keystone.example.org:5000/v3\", got %q", o.AuthURL)
		}
	}
	checkUserData(c, o.UserData)
	d := &LatentDriver{Kind: "openstack", OpenStack: o, Pos: c.pos}
	return driverObject(c, d, "openstack_driver(...)"), nil
}
