package poller

import (
	"context"
	"fmt"
	"os/exec"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// maxPacks is how many pack files a cache may gather before it is
// repacked. Every fetch that brings objects adds one, and each lookup of an
// object may search all of them.
const maxPacks = 50

// repack merges the cache's packs into one when there are more than
// maxPacks. It uses the git program when there is one, which is much
// faster than go-git's repacking and follows ctx.
func repack(ctx context.Context, repo *git.Repository, dir string) error {
	pos, ok := repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= maxPacks {
		return err
	}
	if gitBin, err := exec.LookPath("git"); err == nil {
		out, err := exec.CommandContext(ctx, gitBin, "-C", dir, "repack", "-a", "-d", "-q").CombinedOutput()
		if err != nil {
			return fmt.Errorf("git repack: %w: %s", err, out)
		}
		return nil
	}
	return repo.RepackObjects(&git.RepackConfig{})
}
