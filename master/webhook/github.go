package webhook

import (
	"fmt"

	"github.com/starforge/starforge/master/store"
)

// GitHub and Gitea send pushes and pull requests in nearly the same shape;
// these types hold what both send that a change needs.

type ghPerson struct {
	Name     string `json:"name"`
	Email    string `json:"email"`
	Username string `json:"username"`
}

type ghCommit struct {
	ID        string   `json:"id"`
	Message   string   `json:"message"`
	Timestamp string   `json:"timestamp"`
	URL       string   `json:"url"`
	Author    ghPerson `json:"author"`
	Committer ghPerson `json:"committer"`
	Added     []string `json:"added"`
	Removed   []string `json:"removed"`
	Modified  []string `json:"modified"`
}

type ghRepo struct {
	FullName string `json:"full_name"`
	HTMLURL  string `json:"html_url"`
	CloneURL string `json:"clone_url"`
}

// url is what changes name the repository by: the https clone URL, which
// a git poller of the same repository uses too, so that one change filter
// matches both.
func (r *ghRepo) url() string {
	if r.CloneURL != "" {
		return r.CloneURL
	}
	return r.HTMLURL
}

type ghPush struct {
	Ref        string     `json:"ref"`
	After      string     `json:"after"`
	Created    bool       `json:"created"`
	Deleted    bool       `json:"deleted"`
	Repository *ghRepo    `json:"repository"`
	Commits    []ghCommit `json:"commits"`
	HeadCommit *ghCommit  `json:"head_commit"`
}

type ghLogin struct {
	Login string `json:"login"`
}

type ghPRRef struct {
	Ref  string  `json:"ref"`
	SHA  string  `json:"sha"`
	Repo *ghRepo `json:"repo"`
}

type ghPullRequest struct {
	Action      string  `json:"action"`
	Number      int64   `json:"number"`
	Repository  *ghRepo `json:"repository"`
	Sender      ghLogin `json:"sender"`
	PullRequest *struct {
		Title     string  `json:"title"`
		Body      string  `json:"body"`
		HTMLURL   string  `json:"html_url"`
		UpdatedAt string  `json:"updated_at"`
		User      ghLogin `json:"user"`
		Commits   int64   `json:"commits"`
		Head      ghPRRef `json:"head"`
		Base      ghPRRef `json:"base"`
	} `json:"pull_request"`
}

// service describes the differences between GitHub and Gitea.
type service struct {
	name        string // in messages and as the prefix of change properties
	title       string // in change comments
	eventHeader string
	prRef       string // the ref of pull request N, with %d for N
	prActions   map[string]bool
}

var (
	github = service{
		name:        "github",
		title:       "GitHub",
		eventHeader: "X-GitHub-Event",
		prRef:       "refs/pull/%d/merge", // the PR merged into its base, as Buildbot builds it
		prActions:   map[string]bool{"opened": true, "reopened": true, "synchronize": true},
	}
	gitea = service{
		name:        "gitea",
		title:       "Gitea",
		eventHeader: "X-Gitea-Event",
		prRef:       "refs/pull/%d/head", // Gitea keeps no merge ref
		prActions:   map[string]bool{"opened": true, "reopened": true, "synchronized": true},
	}
)

func parseGitHub(req *request) ([]store.Change, string, error) { return github.parse(req) }
func parseGitea(req *request) ([]store.Change, string, error)  { return gitea.parse(req) }

func (s service) parse(req *request) ([]store.Change, string, error) {
	event := req.r.Header.Get(s.eventHeader)
	payload, err := formPayload(req)
	if err != nil {
		return nil, "", err
	}
	switch event {
	case "":
		return nil, "", badPayload("missing %s header", s.eventHeader)
	case "ping":
		return nil, "ping", nil
	case "push":
		var p ghPush
		if err := decode(payload, &p); err != nil {
			return nil, "", err
		}
		return s.push(&p)
	case "pull_request":
		var p ghPullRequest
		if err := decode(payload, &p); err != nil {
			return nil, "", err
		}
		return s.pullRequest(&p)
	}
	return nil, fmt.Sprintf("%s event %q is not handled (only push and pull_request)", s.name, event), nil
}

func (s service) push(p *ghPush) ([]store.Change, string, error) {
	if err := required("ref", p.Ref); err != nil {
		return nil, "", err
	}
	if p.Repository == nil {
		return nil, "", badPayload("repository: missing")
	}
	if err := required("repository.full_name", p.Repository.FullName); err != nil {
		return nil, "", err
	}
	name, tag := splitRef(p.Ref)
	if p.Deleted || isZeroSHA(p.After) {
		return nil, fmt.Sprintf("%s deleted", p.Ref), nil
	}
	commits, field := p.Commits, "commits"
	// A pushed tag, or a new branch at a commit the repository already
	// had, lists no commits; build the commit it points to.
	if len(commits) == 0 && p.HeadCommit != nil && (tag || p.Created) {
		commits, field = []ghCommit{*p.HeadCommit}, "head_commit"
	}
	if len(commits) == 0 {
		return nil, fmt.Sprintf("push to %s has no commits", p.Ref), nil
	}
	category := ""
	if tag {
		category = CategoryTag
	}
	cs := make([]store.Change, 0, len(commits))
	for i, c := range commits {
		f := at(field, i)
		if field == "head_commit" {
			f = field
		}
		if err := required(f+".id", c.ID); err != nil {
			return nil, "", err
		}
		when, err := parseTime(f+".timestamp", c.Timestamp)
		if err != nil {
			return nil, "", err
		}
		var files []string
		for _, l := range [][]string{c.Added, c.Modified, c.Removed} {
			files = append(files, l...)
		}
		cs = append(cs, store.Change{
			Author:     person(c.Author.Name, c.Author.Email),
			Committer:  person(c.Committer.Name, c.Committer.Email),
			Comments:   c.Message,
			Branch:     name,
			Revision:   c.ID,
			Revlink:    c.URL,
			When:       when,
			Category:   category,
			Repository: p.Repository.url(),
			Project:    p.Repository.FullName,
			Files:      files,
			Properties: props("event", "push"),
		})
	}
	return cs, "", nil
}

func (s service) pullRequest(p *ghPullRequest) ([]store.Change, string, error) {
	if !s.prActions[p.Action] {
		return nil, fmt.Sprintf("pull request action %q is not built", p.Action), nil
	}
	pr := p.PullRequest
	switch {
	case pr == nil:
		return nil, "", badPayload("pull_request: missing")
	case p.Number <= 0:
		return nil, "", badPayload("number: want the pull request's number, got %d", p.Number)
	}
	if err := required("pull_request.head.sha", pr.Head.SHA); err != nil {
		return nil, "", err
	}
	repo := p.Repository
	if repo == nil {
		repo = pr.Base.Repo
	}
	if repo == nil {
		return nil, "", badPayload("repository: missing")
	}
	when, err := parseTime("pull_request.updated_at", pr.UpdatedAt)
	if err != nil {
		return nil, "", err
	}
	author := p.Sender.Login
	if author == "" {
		author = pr.User.Login
	}
	comments := fmt.Sprintf("%s pull request #%d: %s", s.title, p.Number, pr.Title)
	if pr.Body != "" {
		comments += "\n\n" + pr.Body
	}
	headRepo, headURL := "", ""
	if pr.Head.Repo != nil {
		headRepo, headURL = pr.Head.Repo.FullName, pr.Head.Repo.url()
	}
	pre := s.name + "."
	return []store.Change{{
		Author:     author,
		Comments:   comments,
		Branch:     fmt.Sprintf(s.prRef, p.Number),
		Revision:   pr.Head.SHA,
		Revlink:    pr.HTMLURL,
		When:       when,
		Category:   CategoryPull,
		Repository: repo.url(),
		Project:    repo.FullName,
		Properties: props(
			"event", "pull_request",
			"basename", pr.Base.Ref,
			pre+"number", p.Number,
			pre+"title", pr.Title,
			pre+"head.ref", pr.Head.Ref,
			pre+"head.sha", pr.Head.SHA,
			pre+"head.repo.full_name", headRepo,
			pre+"head.repo.clone_url", headURL,
			pre+"base.ref", pr.Base.Ref,
			pre+"base.sha", pr.Base.SHA,
		),
	}}, "", nil
}
