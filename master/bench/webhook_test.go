package bench

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkWebhookToCommand: a signed GitHub push for a branch a
// single_branch_scheduler without tree_stable_timer watches, from the
// request's arrival to the worker accepting the build's first command
// (HMAC check, change stored, classified, buildset stored, dispatched).
// Target: ≤ 50 ms.
func BenchmarkWebhookToCommand(b *testing.B) {
	secrets := b.TempDir()
	const secret = "bench-secret"
	if err := os.WriteFile(filepath.Join(secrets, "gh"), []byte(secret), 0o600); err != nil {
		b.Fatal(err)
	}
	f := startFarm(b, 1, fmt.Sprintf(`
secrets_dir(%q)
change_hook("github", secret=secret("gh"))
builder("trivial", workers=["w1"], steps=[mkdir("out")])
single_branch_scheduler("main", builders=["trivial"], branch="main")
`, secrets))
	url := "http://" + f.m.HTTPAddr() + "/change_hook/github"
	push := func(i int) {
		rev := fmt.Sprintf("%040x", i+1)
		body, _ := json.Marshal(map[string]any{
			"ref": "refs/heads/main", "before": fmt.Sprintf("%040x", i), "after": rev,
			"repository": map[string]any{"full_name": "bench/app", "clone_url": "https://example.org/bench/app.git", "html_url": "https://example.org/bench/app"},
			"commits": []map[string]any{{"id": rev, "message": "change", "timestamp": time.Now().UTC().Format(time.RFC3339),
				"url": "https://example.org/c/" + rev, "author": map[string]any{"name": "B", "email": "b@example.org"},
				"added": []string{}, "modified": []string{"a.c"}, "removed": []string{}}},
		})
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
		f.w.mu.Lock()
		f.w.since = time.Now()
		f.w.mu.Unlock()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("push: %s", resp.Status)
		}
	}
	push(0) // warm up
	f.waitFinished(b, 1)
	f.w.mu.Lock()
	f.w.latency = nil
	f.w.mu.Unlock()
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		push(i)
		f.waitFinished(b, 1)
	}
	b.StopTimer()
	f.reportLatency(b)
}
