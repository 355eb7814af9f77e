package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// loadSource loads src as a master.star in a temporary directory.
func loadSource(t *testing.T, src string) *Config {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.star")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestQEMUDriver(t *testing.T) {
	for _, tc := range []struct {
		call string
		want QEMUDriver
	}{
		{`qemu_driver(kernel = "img/vmlinux", image = "img/base.qcow2")`,
			QEMUDriver{Kernel: "img/vmlinux", Image: "img/base.qcow2", Memory: "512M", CPUs: 1, Accel: "auto", RunDir: "vms"}},
		{`qemu_driver(kernel = "k", image = "i", initrd = "r.gz", memory = "2G", cpus = 2, accel = "tcg", run_dir = "/var/vms", append = "loglevel=7")`,
			QEMUDriver{Kernel: "k", Image: "i", Initrd: "r.gz", Memory: "2G", CPUs: 2, Accel: "tcg", RunDir: "/var/vms", Append: "loglevel=7"}},
	} {
		cfg := loadSource(t, "latent_worker(\"vm\", "+tc.call+")\n")
		d := cfg.LatentWorker("vm").Driver
		if d.Kind != "qemu" || d.QEMU == nil || !reflect.DeepEqual(*d.QEMU, tc.want) {
			t.Errorf("%s:\ngot  %s %+v\nwant %+v", tc.call, d.Kind, d.QEMU, tc.want)
		}
	}
}

func TestEC2Driver(t *testing.T) {
	cfg := loadSource(t, `latent_worker("vm", ec2_driver(region = "eu-west-1", image = "ami-1",
    access_key_id = secret("aws_id"), secret_access_key = secret("aws_key"),
    security_groups = ["sg-1"], spot = True, max_price = "0.02", tags = {"team": "ci"},
    user_data = "#!/bin/sh\nrun {{quote .Password}}\n"))
`)
	d := cfg.LatentWorker("vm").Driver
	want := EC2Driver{Region: "eu-west-1", Image: "ami-1", AccessKeyID: "aws_id", SecretAccessKey: "aws_key", InstanceType: "t3.micro",
		SecurityGroups: []string{"sg-1"}, Spot: true, MaxPrice: "0.02", Tags: map[string]string{"team": "ci"}, UserData: "#!/bin/sh\nrun {{quote .Password}}\n"}
	if d.Kind != "ec2" || d.EC2 == nil || !reflect.DeepEqual(*d.EC2, want) {
		t.Errorf("got %s %+v\nwant %+v", d.Kind, d.EC2, want)
	}
}

func TestOpenStackDriver(t *testing.T) {
	cfg := loadSource(t, `latent_worker("vm", openstack_driver(auth_url = "https://keystone.example.org:5000/v3",
    username = "ci", password = secret("os_password"), project = "builds", image = "img-1", flavor = "m1.small",
    networks = ["net-1"], metadata = {"team": "ci"}))
`)
	d := cfg.LatentWorker("vm").Driver
	want := OpenStackDriver{AuthURL: "https://keystone.example.org:5000/v3", Username: "ci", Password: "os_password", Project: "builds",
		Domain: "Default", Image: "img-1", Flavor: "m1.small", Networks: []string{"net-1"}, Metadata: map[string]string{"team": "ci"}}
	if d.Kind != "openstack" || d.OpenStack == nil || !reflect.DeepEqual(*d.OpenStack, want) {
		t.Errorf("got %s %+v\nwant %+v", d.Kind, d.OpenStack, want)
	}
}
