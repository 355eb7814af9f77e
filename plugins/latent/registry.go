// Package latent holds the drivers of latent workers (see master/latent
// for the interface and the lifecycle they serve): process and command
// here, others in files of their own. Each registers a Factory under the
// kind its config.LatentDriver has.
package latent

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/latent"
)

// Env is what a driver may use of the master.
type Env struct {
	// Worker is the latent worker the driver serves; Worker.Driver is the
	// driver's configuration.
	Worker *config.LatentWorker
	// Basedir is the master's base directory, for state that must survive
	// a restart (overlays, process ids).
	Basedir string
	// ConfigDir is the directory of master.star, against which relative
	// paths in the configuration are resolved.
	ConfigDir string
	Logger    *slog.Logger
	// Secret returns the secret called name (cloud credentials); nil
	// when the master offers none.
	Secret func(name string) (string, error)
}

// Factory makes a driver for env.Worker. It fails if the configuration
// cannot work on this master (a program that is not installed), with an
// error that says what to change.
type Factory func(env Env) (latent.Driver, error)

var (
	mu        sync.Mutex
	factories = map[string]Factory{}
)

// Register makes f the factory of drivers of kind. It panics if kind has
// one already; call it from an init function.
func Register(kind string, f Factory) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := factories[kind]; dup {
		panic("latent: driver kind " + kind + " registered twice")
	}
	factories[kind] = f
}

// New makes the driver of env.Worker with the factory of its kind.
func New(env Env) (latent.Driver, error) {
	if env.Worker == nil || env.Worker.Driver == nil {
		return nil, fmt.Errorf("latent worker has no driver")
	}
	if env.Logger == nil {
		env.Logger = slog.Default()
	}
	kind := env.Worker.Driver.Kind
	mu.Lock()
	f := factories[kind]
	mu.Unlock()
	if f == nil {
		return nil, fmt.Errorf("no latent driver of kind %q on this master (it has %s)", kind, strings.Join(Kinds(), ", "))
	}
	d, err := f(env)
	if err != nil {
		return nil, fmt.Errorf("%s driver: %w", kind, err)
	}
	return d, nil
}

// Kinds returns the registered kinds in order.
func Kinds() []string {
	mu.Lock()
	defer mu.Unlock()
	out := make([]string, 0, len(factories))
	for k := range factories {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
