package config

import (
	"fmt"
	"strings"
	"text/template"

	"go.starlark.net/starlark"
)

// EC2Driver is the setting of an ec2_driver(...): each instance is an
// Amazon EC2 instance (plugins/latent.EC2).
type EC2Driver struct {
	Region         string
	Image          string // AMI id
	InstanceType   string
	Subnet         string
	SecurityGroups []string
	KeyName        string
	Spot           bool
	MaxPrice       string // spot only
	Tags           map[string]string
	UserData       string // a text/template; "" for the default script
	// AccessKeyID and SecretAccessKey name the secrets holding the
	// credentials.
	AccessKeyID, SecretAccessKey string
	Endpoint                     string // "" for AWS's own
}

var ec2DriverParams = []param{
	{name: "region", required: true},
	{name: "image", required: true},
	{name: "access_key_id", required: true},
	{name: "secret_access_key", required: true},
	{name: "instance_type"},
	{name: "subnet"},
	{name: "security_groups"},
	{name: "key_name"},
	{name: "spot"},
	{name: "max_price"},
	{name: "tags"},
	{name: "user_data"},
	{name: "endpoint"},
}

// builtinEC2Driver implements ec2_driver(region=, image=,
// access_key_id=secret(), secret_access_key=secret(),
// instance_type="t3.micro", subnet="", security_groups=[], key_name="",
// spot=False, max_price="", tags={}, user_data="", endpoint="").
func builtinEC2Driver(c *call) (starlark.Value, error) {
	e := &EC2Driver{
		Region:          c.nonEmptyStr("region", ""),
		Image:           c.nonEmptyStr("image", ""),
		AccessKeyID:     c.secretName("access_key_id"),
		SecretAccessKey: c.secretName("secret_access_key"),
		InstanceType:    c.nonEmptyStr("instance_type", "t3.micro"),
		Subnet:          c.str("subnet", ""),
		SecurityGroups:  c.strList("security_groups"),
		KeyName:         c.str("key_name", ""),
		Spot:            c.bool("spot", false),
		MaxPrice:        c.str("max_price", ""),
		Tags:            c.strDict("tags"),
		UserData:        c.str("user_data", ""),
		Endpoint:        c.str("endpoint", ""),
	}
	if e.MaxPrice != "" && !e.Spot {
		c.argErrorf("max_price", "only for spot instances (spot = True)")
	}
	checkUserData(c, e.UserData)
	d := &LatentDriver{Kind: "ec2", EC2: e, Pos: c.pos}
	return driverObject(c, d, "ec2_driver(...)"), nil
}

// checkUserData refuses a user_data template that does not parse.
func checkUserData(c *call, text string) {
	if text == "" {
		return
	}
	if _, err := ParseUserData(text); err != nil {
		c.argErrorf("user_data", "%v", err)
	}
}

// ParseUserData parses a cloud driver's user_data: a text/template over
// the instance (.Name, .WorkerName, .Password, .MasterAddr, .Properties)
// with a function quote that quotes a value as one sh word.
func ParseUserData(text string) (*template.Template, error) {
	t, err := template.New("user_data").Funcs(template.FuncMap{"quote": shQuote}).Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("template line %s", strings.TrimPrefix(err.Error(), "template: user_data:"))
	}
	return t, nil
}

// shQuote quotes s as one word for sh.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
