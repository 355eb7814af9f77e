package latent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/starforge/starforge/master/latent"
)

// The drivers of this package that master.star names by kind.
func init() {
	Register("qemu", func(env Env) (latent.Driver, error) {
		d := env.Worker.Driver.QEMU
		if d == nil {
			return nil, errors.New("qemu driver without its settings")
		}
		return NewQEMU(d, env.Basedir), nil
	})
	Register("ec2", func(env Env) (latent.Driver, error) {
		d := env.Worker.Driver.EC2
		if d == nil {
			return nil, errors.New("ec2 driver without its settings")
		}
		id, err := secretOf(env, d.AccessKeyID)
		if err != nil {
			return nil, fmt.Errorf("ec2 access_key_id: %w", err)
		}
		key, err := secretOf(env, d.SecretAccessKey)
		if err != nil {
			return nil, fmt.Errorf("ec2 secret_access_key: %w", err)
		}
		return NewEC2(d, id, key), nil
	})
	Register("openstack", func(env Env) (latent.Driver, error) {
		d := env.Worker.Driver.OpenStack
		if d == nil {
			return nil, errors.New("openstack driver without its settings")
		}
		pw, err := secretOf(env, d.Password)
		if err != nil {
			return nil, fmt.Errorf("openstack password: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return NewOpenStack(ctx, d, pw)
	})
}

// secretOf looks a named secret up through the master.
func secretOf(env Env, name string) (string, error) {
	if name == "" {
		return "", nil
	}
	if env.Secret == nil {
		return "", fmt.Errorf("secret %s: this master offers no secrets", name)
	}
	return env.Secret(name)
}
