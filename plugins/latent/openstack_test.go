package latent_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/config"
	mlatent "github.com/starforge/starforge/master/latent"
	plugin "github.com/starforge/starforge/plugins/latent"
)

// fakeOpenStack is Keystone's token API and the part of nova's server
// API the driver uses, over servers kept in memory.
type fakeOpenStack struct {
	url string
	mu  sync.Mutex
	n   int
	srv map[string]*fakeServer
}

type fakeServer struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Status   string            `json:"status"`
	Metadata map[string]string `json:"metadata"`
	Fault    map[string]any    `json:"fault,omitempty"`
	Image    map[string]string `json:"image"`
	Flavor   map[string]string `json:"flavor"`
	userData string
	networks []any
}

const fakeToken = "tok-123"

func (f *fakeOpenStack) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == "POST" && r.URL.Path == "/v3/auth/tokens" {
		var body struct {
			Auth struct {
				Identity struct {
					Password struct {
						User struct {
							Name, Password string
						}
					}
				}
			}
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Auth.Identity.Password.User.Name != "ci" || body.Auth.Identity.Password.User.Password != "os-secret" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":{"code":401,"title":"Unauthorized","message":"The request you have made requires authentication."}}`)
			return
		}
		w.Header().Set("X-Subject-Token", fakeToken)
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"token":{"expires_at":"2999-01-01T00:00:00.000000Z","user":{"id":"u1","name":"ci","domain":{"id":"default","name":"Default"}},
			"project":{"id":"p1","name":"builds","domain":{"id":"default","name":"Default"}},
			"catalog":[{"type":"compute","name":"nova","id":"c1","endpoints":[{"id":"e1","interface":"public","region":"RegionOne","region_id":"RegionOne","url":"%s/compute/v2.1"}]}]}}`, f.url)
		return
	}
	if r.Header.Get("X-Auth-Token") != fakeToken {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case r.Method == "POST" && r.URL.Path == "/compute/v2.1/servers":
		var body struct {
			Server struct {
				Name      string            `json:"name"`
				ImageRef  string            `json:"imageRef"`
				FlavorRef string            `json:"flavorRef"`
				UserData  string            `json:"user_data"`
				Metadata  map[string]string `json:"metadata"`
				Networks  []any             `json:"networks"`
			} `json:"server"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		ud, _ := base64.StdEncoding.DecodeString(body.Server.UserData)
		f.n++
		s := &fakeServer{ID: fmt.Sprintf("srv-%d", f.n), Name: body.Server.Name, Status: "BUILD", Metadata: body.Server.Metadata,
			Image: map[string]string{"id": body.Server.ImageRef}, Flavor: map[string]string{"id": body.Server.FlavorRef},
			userData: string(ud), networks: body.Server.Networks}
		f.srv[s.ID] = s
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"server":{"id":%q,"adminPass":"x","links":[]}}`, s.ID)
	case r.Method == "GET" && r.URL.Path == "/compute/v2.1/servers/detail":
		re, err := regexp.Compile(r.URL.Query().Get("name"))
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		list := []*fakeServer{}
		for _, s := range f.srv {
			if re.MatchString(s.Name) {
				list = append(list, s)
			}
		}
		json.NewEncoder(w).Encode(map[string]any{"servers": list})
	case r.Method == "DELETE" && strings.HasPrefix(r.URL.Path, "/compute/v2.1/servers/"):
		id := strings.TrimPrefix(r.URL.Path, "/compute/v2.1/servers/")
		if f.srv[id] == nil {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"itemNotFound":{"code":404,"message":"Instance could not be found."}}`)
			return
		}
		delete(f.srv, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func newFakeOpenStack(t *testing.T) (*fakeOpenStack, *config.OpenStackDriver) {
	f := &fakeOpenStack{srv: map[string]*fakeServer{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f, &config.OpenStackDriver{AuthURL: srv.URL + "/v3", Username: "ci", Project: "builds", Domain: "Default",
		Region: "RegionOne", Image: "img-1", Flavor: "m1.small", Networks: []string{"net-1"}, Metadata: map[string]string{"team": "ci"}}
}

func TestOpenStack(t *testing.T) {
	ctx := context.Background()
	f, c := newFakeOpenStack(t)
	d, err := plugin.NewOpenStack(ctx, c, "os-secret")
	if err != nil {
		t.Fatal(err)
	}
	inst := mlatent.Instance{Name: "vm-1-abc", WorkerName: "vm", Password: "one-time", MasterAddr: "master.example.org:9989"}
	for _, i := range []mlatent.Instance{inst, {Name: "vm-10-x", WorkerName: "vm", Password: "p", MasterAddr: "m:1"}, {Name: "other-1", WorkerName: "o", Password: "p", MasterAddr: "m:1"}} {
		if err := d.Start(ctx, i); err != nil {
			t.Fatal(err)
		}
	}
	// A server someone named alike by hand, without the metadata.
	f.srv["manual"] = &fakeServer{ID: "manual", Name: "vm-1-abc-manual", Status: "ACTIVE", Metadata: map[string]string{}}
	s := f.srv["srv-1"]
	if s.Name != "vm-1-abc" || !reflect.DeepEqual(s.Metadata, map[string]string{"starforge_instance": "vm-1-abc", "team": "ci"}) ||
		s.Image["id"] != "img-1" || s.Flavor["id"] != "m1.small" || len(s.networks) != 1 {
		t.Errorf("created %+v", s)
	}
	for _, want := range []string{`--master 'master.example.org:9989'`, `'one-time'`} {
		if !strings.Contains(s.userData, want) {
			t.Errorf("user data lacks %q:\n%s", want, s.userData)
		}
	}
	if names, err := d.List(ctx, "vm-1"); err != nil || !reflect.DeepEqual(names, []string{"vm-1-abc", "vm-10-x"}) {
		t.Errorf("List(vm-1) = %v, %v", names, err)
	}
	if err := d.Check(ctx, "vm-1-abc"); err != nil {
		t.Errorf("Check of a building server: %v", err)
	}
	f.mu.Lock()
	s.Status, s.Fault = "ERROR", map[string]any{"code": 500, "message": "No valid host was found."}
	f.mu.Unlock()
	if err := d.Check(ctx, "vm-1-abc"); !errors.Is(err, mlatent.ErrGone) || !strings.Contains(err.Error(), "No valid host") {
		t.Errorf("Check of a failed server = %v, want ErrGone with the fault", err)
	}
	if err := d.Stop(ctx, "vm-1-abc"); err != nil {
		t.Fatal(err)
	}
	if f.srv["srv-1"] != nil || f.srv["manual"] == nil || f.srv["srv-2"] == nil {
		t.Errorf("after Stop(vm-1-abc) the servers are %v; want srv-1 deleted, the others kept", keys(f.srv))
	}
	if err := d.Stop(ctx, "vm-1-abc"); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := d.Check(ctx, "vm-1-abc"); !errors.Is(err, mlatent.ErrGone) {
		t.Errorf("Check after Stop = %v, want ErrGone", err)
	}
}

func TestOpenStackBadPassword(t *testing.T) {
	_, c := newFakeOpenStack(t)
	_, err := plugin.NewOpenStack(context.Background(), c, "wrong")
	if err == nil || !strings.Contains(err.Error(), "openstack: authenticate at") {
		t.Errorf("NewOpenStack with a wrong password = %v", err)
	}
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
