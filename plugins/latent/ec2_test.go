package latent_test

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/config"
	mlatent "github.com/starforge/starforge/master/latent"
	plugin "github.com/starforge/starforge/plugins/latent"
)

// fakeEC2 is a small EC2 query API: RunInstances, DescribeInstances
// and TerminateInstances over instances kept in memory.
type fakeEC2 struct {
	t  *testing.T
	mu sync.Mutex
	n  int
	vm []*fakeInstance
}

type fakeInstance struct {
	ID, State, Reason, Token string
	Tags                     map[string]string
	UserData                 string
	Market, MaxPrice         string
	ImageID, Type            string
}

func (f *fakeEC2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.Contains(r.Header.Get("Authorization"), "Credential=AKIDTEST/") {
		ec2Error(w, http.StatusUnauthorized, "AuthFailure", "no or wrong credentials: "+r.Header.Get("Authorization"))
		return
	}
	if err := r.ParseForm(); err != nil {
		ec2Error(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v := r.PostForm
	switch v.Get("Action") {
	case "RunInstances":
		for _, i := range f.vm {
			if i.Token != "" && i.Token == v.Get("ClientToken") {
				fmt.Fprintf(w, `<RunInstancesResponse><instancesSet>%s</instancesSet></RunInstancesResponse>`, i.xml())
				return
			}
		}
		f.n++
		i := &fakeInstance{ID: fmt.Sprintf("i-%04d", f.n), State: "pending", Token: v.Get("ClientToken"), Tags: map[string]string{},
			Market: v.Get("InstanceMarketOptions.MarketType"), MaxPrice: v.Get("InstanceMarketOptions.SpotOptions.MaxPrice"),
			ImageID: v.Get("ImageId"), Type: v.Get("InstanceType")}
		ud, err := base64.StdEncoding.DecodeString(v.Get("UserData"))
		if err != nil {
			ec2Error(w, http.StatusBadRequest, "InvalidParameterValue", "user data: "+err.Error())
			return
		}
		i.UserData = string(ud)
		for n := 1; v.Has(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", n)); n++ {
			i.Tags[v.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", n))] = v.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", n))
		}
		f.vm = append(f.vm, i)
		fmt.Fprintf(w, `<RunInstancesResponse><reservationId>r-1</reservationId><instancesSet>%s</instancesSet></RunInstancesResponse>`, i.xml())
	case "DescribeInstances":
		var b strings.Builder
		for _, i := range f.vm {
			if i.matches(v) {
				b.WriteString(i.xml())
			}
		}
		fmt.Fprintf(w, `<DescribeInstancesResponse><reservationSet><item><reservationId>r-1</reservationId><instancesSet>%s</instancesSet></item></reservationSet></DescribeInstancesResponse>`, b.String())
	case "TerminateInstances":
		var b strings.Builder
		for n := 1; v.Has(fmt.Sprintf("InstanceId.%d", n)); n++ {
			id := v.Get(fmt.Sprintf("InstanceId.%d", n))
			i := f.byID(id)
			if i == nil {
				ec2Error(w, http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '"+id+"' does not exist")
				return
			}
			i.State = "terminated"
			fmt.Fprintf(&b, `<item><instanceId>%s</instanceId><currentState><code>48</code><name>terminated</name></currentState></item>`, id)
		}
		fmt.Fprintf(w, `<TerminateInstancesResponse><instancesSet>%s</instancesSet></TerminateInstancesResponse>`, b.String())
	default:
		ec2Error(w, http.StatusBadRequest, "InvalidAction", "no action "+v.Get("Action"))
	}
}

func (f *fakeEC2) byID(id string) *fakeInstance {
	for _, i := range f.vm {
		if i.ID == id {
			return i
		}
	}
	return nil
}

// matches applies DescribeInstances' filters: tag:KEY (a value may end
// in *) and instance-state-name.
func (i *fakeInstance) matches(v map[string][]string) bool {
	get := func(k string) string {
		if s := v[k]; len(s) > 0 {
			return s[0]
		}
		return ""
	}
	for n := 1; get(fmt.Sprintf("Filter.%d.Name", n)) != ""; n++ {
		name := get(fmt.Sprintf("Filter.%d.Name", n))
		var got string
		var has bool
		switch {
		case name == "instance-state-name":
			got, has = i.State, true
		case strings.HasPrefix(name, "tag:"):
			got, has = i.Tags[strings.TrimPrefix(name, "tag:")]
		default:
			panic("fake ec2: filter " + name)
		}
		ok := false
		for m := 1; get(fmt.Sprintf("Filter.%d.Value.%d", n, m)) != ""; m++ {
			want := get(fmt.Sprintf("Filter.%d.Value.%d", n, m))
			if p, prefix := strings.CutSuffix(want, "*"); has && (got == want || prefix && strings.HasPrefix(got, p)) {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (i *fakeInstance) xml() string {
	var tags strings.Builder
	keys := make([]string, 0, len(i.Tags))
	for k := range i.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&tags, `<item><key>%s</key><value>%s</value></item>`, esc(k), esc(i.Tags[k]))
	}
	reason := ""
	if i.Reason != "" {
		reason = `<stateReason><code>Server.SpotInstanceTermination</code><message>` + esc(i.Reason) + `</message></stateReason>`
	}
	return fmt.Sprintf(`<item><instanceId>%s</instanceId><imageId>%s</imageId><instanceState><code>16</code><name>%s</name></instanceState>%s<tagSet>%s</tagSet></item>`,
		i.ID, esc(i.ImageID), i.State, reason, tags.String())
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func ec2Error(w http.ResponseWriter, status int, code, msg string) {
	w.WriteHeader(status)
	fmt.Fprintf(w, `<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>req-1</RequestID></Response>`, code, esc(msg))
}

func newFakeEC2(t *testing.T, c config.EC2Driver, key string) (*plugin.EC2, *fakeEC2) {
	f := &fakeEC2{t: t}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c.Region, c.Endpoint = "eu-west-1", srv.URL
	return plugin.NewEC2(&c, key, "secret-key"), f
}

func TestEC2(t *testing.T) {
	ctx := context.Background()
	d, f := newFakeEC2(t, config.EC2Driver{Image: "ami-123", InstanceType: "t3.small", Spot: true, MaxPrice: "0.01", Tags: map[string]string{"team": "ci"}}, "AKIDTEST")
	inst := mlatent.Instance{Name: "vm-1-abc", WorkerName: "vm", Password: "p'w d", MasterAddr: "master.example.org:9989"}
	if err := d.Start(ctx, inst); err != nil {
		t.Fatal(err)
	}
	if err := d.Start(ctx, mlatent.Instance{Name: "other-1", WorkerName: "other", Password: "x", MasterAddr: "m:1"}); err != nil {
		t.Fatal(err)
	}
	got := f.vm[0]
	wantTags := map[string]string{"Name": "vm-1-abc", "starforge:instance": "vm-1-abc", "team": "ci"}
	if !reflect.DeepEqual(got.Tags, wantTags) || got.Market != "spot" || got.MaxPrice != "0.01" || got.ImageID != "ami-123" || got.Type != "t3.small" {
		t.Errorf("started %+v; want tags %v, spot at 0.01, ami-123, t3.small", got, wantTags)
	}
	for _, want := range []string{`--master 'master.example.org:9989'`, `--name 'vm'`, `printf '%s\n' 'p'\''w d'`} {
		if !strings.Contains(got.UserData, want) {
			t.Errorf("user data lacks %q:\n%s", want, got.UserData)
		}
	}
	// A retried Start (same client token) starts nothing more.
	if err := d.Start(ctx, inst); err != nil || len(f.vm) != 2 {
		t.Errorf("retried Start: %v, %d instances; want 2", err, len(f.vm))
	}

	if names, err := d.List(ctx, "vm-"); err != nil || !reflect.DeepEqual(names, []string{"vm-1-abc"}) {
		t.Errorf("List(vm-) = %v, %v", names, err)
	}
	if err := d.Check(ctx, "vm-1-abc"); err != nil {
		t.Errorf("Check of a pending instance: %v", err)
	}
	// EC2 takes the spot instance back.
	f.mu.Lock()
	got.State, got.Reason = "terminated", "Server.SpotInstanceTermination: Spot instance termination"
	f.mu.Unlock()
	err := d.Check(ctx, "vm-1-abc")
	if !errors.Is(err, mlatent.ErrGone) || !strings.Contains(err.Error(), "Spot instance termination") {
		t.Errorf("Check of a reclaimed instance = %v; want ErrGone with the reason", err)
	}
	if names, err := d.List(ctx, "vm-"); err != nil || len(names) != 0 {
		t.Errorf("List(vm-) after reclaim = %v, %v; want none", names, err)
	}
	// Stop of a gone instance is no error; Stop of a live one terminates it.
	if err := d.Stop(ctx, "vm-1-abc"); err != nil {
		t.Errorf("Stop of a gone instance: %v", err)
	}
	if err := d.Stop(ctx, "other-1"); err != nil {
		t.Fatal(err)
	}
	if f.vm[1].State != "terminated" {
		t.Errorf("other-1 is %s after Stop, want terminated", f.vm[1].State)
	}
	if err := d.Check(ctx, "nonesuch"); !errors.Is(err, mlatent.ErrGone) {
		t.Errorf("Check(nonesuch) = %v, want ErrGone", err)
	}
}

// TestEC2Errors: the API's errors reach the caller with what failed.
func TestEC2Errors(t *testing.T) {
	ctx := context.Background()
	d, _ := newFakeEC2(t, config.EC2Driver{Image: "ami-123"}, "AKIDWRONG")
	err := d.Start(ctx, mlatent.Instance{Name: "vm-1", WorkerName: "vm", Password: "p", MasterAddr: "m:1"})
	if err == nil || !strings.Contains(err.Error(), "ec2: instance vm-1: run") || !strings.Contains(err.Error(), "AuthFailure") {
		t.Errorf("Start with wrong credentials = %v", err)
	}
	if _, err := d.List(ctx, "vm-"); err == nil || !strings.Contains(err.Error(), "AuthFailure") {
		t.Errorf("List with wrong credentials = %v", err)
	}
	d, _ = newFakeEC2(t, config.EC2Driver{Image: "ami-123", UserData: "{{.Nope}}"}, "AKIDTEST")
	if err := d.Start(ctx, mlatent.Instance{Name: "vm-1"}); err == nil || !strings.Contains(err.Error(), "Nope") {
		t.Errorf("Start with a bad user data template = %v", err)
	}
}
