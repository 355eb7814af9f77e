package latent

import (
	"strconv"
	"strings"

	"github.com/starforge/starforge/config"
)

// A latent worker with max_instances = N has N slots, each running at most
// one instance at a time. A slot is a worker to the rest of the master (the
// dispatcher, the registry, the store, the web UI): the first is named as
// the latent worker, the others get "/2", "/3"... appended ("vm", "vm/2").
// Worker names cannot contain "/", so slot names never clash with another
// worker's. Every instance logs in with the latent worker's name and its
// one-time password; the password tells which slot it fills.

// Slots returns the names of w's slots, the latent worker's own name first.
func Slots(w *config.LatentWorker) []string {
	n := max(w.MaxInstances, 1)
	out := make([]string, 0, n)
	out = append(out, w.Name)
	for i := 2; i <= n; i++ {
		out = append(out, w.Name+"/"+strconv.Itoa(i))
	}
	return out
}

// WorkerOf returns the name of the latent worker whose slot is named slot
// (slot itself for the first slot, and for any other worker name).
func WorkerOf(slot string) string {
	name, _, _ := strings.Cut(slot, "/")
	return name
}
