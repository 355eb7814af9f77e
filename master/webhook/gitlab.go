package webhook

import (
	"fmt"

	"github.com/starforge/starforge/master/store"
)

type glProject struct {
	PathWithNamespace string `json:"path_with_namespace"`
	WebURL            string `json:"web_url"`
	GitHTTPURL        string `json:"git_http_url"`
}

// url is the https clone URL, as for GitHub (see ghRepo.url).
func (p *glProject) url() string {
	if p.GitHTTPURL != "" {
		return p.GitHTTPURL
	}
	return p.WebURL
}

type glCommit struct {
	ID        string `json:"id"`
	Message   string `json:"message"`
	Timestamp string `json:"timestamp"`
	URL       string `json:"url"`
	Author    struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"author"`
	Added    []string `json:"added"`
	Modified []string `json:"modified"`
	Removed  []string `json:"removed"`
}

// glPush is a Push Hook or a Tag Push Hook.
type glPush struct {
	ObjectKind  string     `json:"object_kind"`
	Ref         string     `json:"ref"`
	After       string     `json:"after"`
	CheckoutSHA string     `json:"checkout_sha"`
	UserName    string     `json:"user_name"`
	UserEmail   string     `json:"user_email"`
	Project     *glProject `json:"project"`
	Commits     []glCommit `json:"commits"`
}

type glMergeRequest struct {
	User struct {
		Name     string `json:"name"`
		Username string `json:"username"`
		Email    string `json:"email"`
	} `json:"user"`
	Project *glProject `json:"project"`
	Attrs   *struct {
		IID          int64      `json:"iid"`
		Title        string     `json:"title"`
		Description  string     `json:"description"`
		SourceBranch string     `json:"source_branch"`
		TargetBranch string     `json:"target_branch"`
		URL          string     `json:"url"`
		Action       string     `json:"action"`
		OldRev       string     `json:"oldrev"` // set by an update that pushed commits
		Source       *glProject `json:"source"`
		Target       *glProject `json:"target"`
		LastCommit   *glCommit  `json:"last_commit"`
	} `json:"object_attributes"`
}

func parseGitLab(req *request) ([]store.Change, string, error) {
	event := req.r.Header.Get("X-Gitlab-Event")
	switch event {
	case "":
		return nil, "", badPayload("missing X-Gitlab-Event header")
	case "Push Hook", "Tag Push Hook":
		var p glPush
		if err := decode(req.body, &p); err != nil {
			return nil, "", err
		}
		return gitlabPush(&p)
	case "Merge Request Hook":
		var p glMergeRequest
		if err := decode(req.body, &p); err != nil {
			return nil, "", err
		}
		return gitlabMergeRequest(&p)
	}
	return nil, fmt.Sprintf("gitlab event %q is not handled (only Push Hook, Tag Push Hook and Merge Request Hook)", event), nil
}

func gitlabPush(p *glPush) ([]store.Change, string, error) {
	if err := required("ref", p.Ref); err != nil {
		return nil, "", err
	}
	if p.Project == nil {
		return nil, "", badPayload("project: missing")
	}
	if err := required("project.path_with_namespace", p.Project.PathWithNamespace); err != nil {
		return nil, "", err
	}
	if isZeroSHA(p.After) {
		return nil, fmt.Sprintf("%s deleted", p.Ref), nil
	}
	name, tag := splitRef(p.Ref)
	base := store.Change{
		Branch:     name,
		Repository: p.Project.url(),
		Project:    p.Project.PathWithNamespace,
		Properties: props("event", p.ObjectKind),
	}
	if tag {
		// A tag push lists no commits: the tag's commit is checkout_sha
		// ("after" is the tag object of an annotated tag).
		if err := required("checkout_sha", p.CheckoutSHA); err != nil {
			return nil, "", err
		}
		c := base
		c.Author = person(p.UserName, p.UserEmail)
		c.Revision = p.CheckoutSHA
		c.Category = CategoryTag
		c.Comments = "tag " + name
		return []store.Change{c}, "", nil
	}
	if len(p.Commits) == 0 {
		return nil, fmt.Sprintf("push to %s has no commits", p.Ref), nil
	}
	cs := make([]store.Change, 0, len(p.Commits))
	for i, gc := range p.Commits {
		f := at("commits", i)
		if err := required(f+".id", gc.ID); err != nil {
			return nil, "", err
		}
		when, err := parseTime(f+".timestamp", gc.Timestamp)
		if err != nil {
			return nil, "", err
		}
		c := base
		c.Author = person(gc.Author.Name, gc.Author.Email)
		c.Comments = gc.Message
		c.Revision = gc.ID
		c.Revlink = gc.URL
		c.When = when
		for _, l := range [][]string{gc.Added, gc.Modified, gc.Removed} {
			c.Files = append(c.Files, l...)
		}
		cs = append(cs, c)
	}
	return cs, "", nil
}

// gitlabMergeRequest makes one change for a merge request that was opened,
// reopened or updated with new commits. Its branch is the merge request's
// ref in the target project, refs/merge-requests/IID/head, which a git step
// can fetch without knowing the source project.
func gitlabMergeRequest(p *glMergeRequest) ([]store.Change, string, error) {
	a := p.Attrs
	if a == nil {
		return nil, "", badPayload("object_attributes: missing")
	}
	switch {
	case a.Action == "open" || a.Action == "reopen":
	case a.Action == "update" && a.OldRev != "":
	case a.Action == "update":
		return nil, "merge request update without new commits", nil
	default:
		return nil, fmt.Sprintf("merge request action %q is not built", a.Action), nil
	}
	if a.IID <= 0 {
		return nil, "", badPayload("object_attributes.iid: want the merge request's number, got %d", a.IID)
	}
	if a.LastCommit == nil {
		return nil, "", badPayload("object_attributes.last_commit: missing")
	}
	if err := required("object_attributes.last_commit.id", a.LastCommit.ID); err != nil {
		return nil, "", err
	}
	target := a.Target
	if target == nil {
		target = p.Project
	}
	if target == nil {
		return nil, "", badPayload("object_attributes.target: missing")
	}
	when, err := parseTime("object_attributes.last_commit.timestamp", a.LastCommit.Timestamp)
	if err != nil {
		return nil, "", err
	}
	author := person(a.LastCommit.Author.Name, a.LastCommit.Author.Email)
	if author == "" {
		author = person(p.User.Name, p.User.Email)
	}
	comments := fmt.Sprintf("GitLab merge request !%d: %s", a.IID, a.Title)
	if a.Description != "" {
		comments += "\n\n" + a.Description
	}
	srcRepo := ""
	if a.Source != nil {
		srcRepo = a.Source.url()
	}
	return []store.Change{{
		Author:     author,
		Comments:   comments,
		Branch:     fmt.Sprintf("refs/merge-requests/%d/head", a.IID),
		Revision:   a.LastCommit.ID,
		Revlink:    a.URL,
		When:       when,
		Category:   CategoryPull,
		Repository: target.url(),
		Project:    target.PathWithNamespace,
		Properties: props(
			"event", "merge_request",
			"basename", a.TargetBranch,
			"gitlab.iid", a.IID,
			"gitlab.title", a.Title,
			"gitlab.source_branch", a.SourceBranch,
			"gitlab.source_repository", srcRepo,
			"gitlab.target_branch", a.TargetBranch,
			"gitlab.user", p.User.Username,
		),
	}}, "", nil
}
