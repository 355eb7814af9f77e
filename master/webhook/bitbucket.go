package webhook

import (
	"fmt"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// The bitbucket dialect takes pushes from both Bitbucket Cloud (event
// repo:push) and Bitbucket Server / Data Center (repo:refs_changed); the
// X-Event-Key header tells them apart. Both sign with X-Hub-Signature.

type bbLink struct {
	Href string `json:"href"`
}

type bbCommit struct {
	Hash    string `json:"hash"`
	Message string `json:"message"`
	Date    string `json:"date"`
	Author  struct {
		Raw string `json:"raw"` // "Name <email>"
	} `json:"author"`
	Links struct {
		HTML bbLink `json:"html"`
	} `json:"links"`
}

type bbRef struct {
	Type   string   `json:"type"` // "branch" or "tag"
	Name   string   `json:"name"`
	Target bbCommit `json:"target"`
}

type bbCloudPush struct {
	Actor struct {
		DisplayName string `json:"display_name"`
	} `json:"actor"`
	Repository *struct {
		FullName string `json:"full_name"`
		Links    struct {
			HTML bbLink `json:"html"`
		} `json:"links"`
	} `json:"repository"`
	Push *struct {
		Changes []struct {
			New     *bbRef     `json:"new"` // null: the ref was deleted
			Commits []bbCommit `json:"commits"`
		} `json:"changes"`
	} `json:"push"`
}

type bbServerPush struct {
	Date  string `json:"date"`
	Actor struct {
		Name         string `json:"name"`
		EmailAddress string `json:"emailAddress"`
		DisplayName  string `json:"displayName"`
	} `json:"actor"`
	Repository *struct {
		Slug    string `json:"slug"`
		Project struct {
			Key string `json:"key"`
		} `json:"project"`
		Links struct {
			Clone []struct {
				Href string `json:"href"`
				Name string `json:"name"` // "http" or "ssh"
			} `json:"clone"`
			Self []bbLink `json:"self"`
		} `json:"links"`
	} `json:"repository"`
	Changes []struct {
		Ref struct {
			ID        string `json:"id"`
			DisplayID string `json:"displayId"`
			Type      string `json:"type"` // "BRANCH" or "TAG"
		} `json:"ref"`
		ToHash string `json:"toHash"`
		Type   string `json:"type"` // "ADD", "UPDATE" or "DELETE"
	} `json:"changes"`
}

func parseBitbucket(req *request) ([]store.Change, string, error) {
	event := req.r.Header.Get("X-Event-Key")
	switch event {
	case "":
		return nil, "", badPayload("missing X-Event-Key header")
	case "diagnostics:ping":
		return nil, "ping", nil
	case "repo:push":
		var p bbCloudPush
		if err := decode(req.body, &p); err != nil {
			return nil, "", err
		}
		return bitbucketCloudPush(&p)
	case "repo:refs_changed":
		var p bbServerPush
		if err := decode(req.body, &p); err != nil {
			return nil, "", err
		}
		return bitbucketServerPush(&p)
	}
	return nil, fmt.Sprintf("bitbucket event %q is not handled (only repo:push and repo:refs_changed)", event), nil
}

// bitbucketCloudPush makes one change per listed commit of each pushed
// branch, oldest first, and one per pushed tag. Bitbucket lists at most
// five commits per ref, newest first; a ref with none listed gets a change
// for its new head.
func bitbucketCloudPush(p *bbCloudPush) ([]store.Change, string, error) {
	if p.Repository == nil {
		return nil, "", badPayload("repository: missing")
	}
	if err := required("repository.full_name", p.Repository.FullName); err != nil {
		return nil, "", err
	}
	if p.Push == nil {
		return nil, "", badPayload("push: missing")
	}
	var cs []store.Change
	deleted := 0
	for i, ch := range p.Push.Changes {
		f := at("push.changes", i)
		if ch.New == nil {
			deleted++
			continue
		}
		if err := required(f+".new.name", ch.New.Name); err != nil {
			return nil, "", err
		}
		category := ""
		switch ch.New.Type {
		case "tag":
			category = CategoryTag
		case "branch", "named_branch", "bookmark":
		default:
			return nil, "", badPayload("%s.new.type: want branch or tag, got %q", f, ch.New.Type)
		}
		// fields[j] names commits[j] in errors.
		commits, fields := ch.Commits, make([]string, len(ch.Commits))
		for j := range commits {
			fields[j] = at(f+".commits", j)
		}
		if len(commits) == 0 || category == CategoryTag {
			commits, fields = []bbCommit{ch.New.Target}, []string{f + ".new.target"}
		}
		for j := len(commits) - 1; j >= 0; j-- {
			c, cf := commits[j], fields[j]
			if err := required(cf+".hash", c.Hash); err != nil {
				return nil, "", err
			}
			when, err := parseTime(cf+".date", c.Date)
			if err != nil {
				return nil, "", err
			}
			author := c.Author.Raw
			if author == "" {
				author = p.Actor.DisplayName
			}
			cs = append(cs, store.Change{
				Author:     author,
				Comments:   c.Message,
				Branch:     ch.New.Name,
				Revision:   c.Hash,
				Revlink:    c.Links.HTML.Href,
				When:       when,
				Category:   category,
				Repository: p.Repository.Links.HTML.Href,
				Project:    p.Repository.FullName,
				Properties: props("event", "repo:push"),
			})
		}
	}
	if len(cs) == 0 {
		if deleted > 0 {
			return nil, "the push only deleted refs", nil
		}
		return nil, "the push changed no ref", nil
	}
	return cs, "", nil
}

// bitbucketServerPush makes one change per updated or added ref: the
// payload names the new head of each ref, not the commits pushed.
func bitbucketServerPush(p *bbServerPush) ([]store.Change, string, error) {
	r := p.Repository
	if r == nil {
		return nil, "", badPayload("repository: missing")
	}
	if err := required("repository.slug", r.Slug); err != nil {
		return nil, "", err
	}
	repoURL, browse := "", ""
	for _, c := range r.Links.Clone {
		if c.Name == "http" || (repoURL == "" && strings.HasPrefix(c.Href, "https://")) {
			repoURL = c.Href
		}
	}
	if len(r.Links.Self) > 0 {
		browse = strings.TrimSuffix(r.Links.Self[0].Href, "/browse")
		if repoURL == "" {
			repoURL = browse
		}
	}
	when, err := parseTime("date", p.Date)
	if err != nil {
		return nil, "", err
	}
	author := person(p.Actor.DisplayName, p.Actor.EmailAddress)
	if author == "" {
		author = p.Actor.Name
	}
	project := r.Slug
	if r.Project.Key != "" {
		project = r.Project.Key + "/" + r.Slug
	}
	var cs []store.Change
	for i, ch := range p.Changes {
		f := at("changes", i)
		if ch.Type == "DELETE" || isZeroSHA(ch.ToHash) {
			continue
		}
		if err := required(f+".toHash", ch.ToHash); err != nil {
			return nil, "", err
		}
		name, tag := splitRef(ch.Ref.ID)
		if ch.Ref.ID == "" {
			name, tag = ch.Ref.DisplayID, ch.Ref.Type == "TAG"
		}
		if err := required(f+".ref.id", name); err != nil {
			return nil, "", err
		}
		c := store.Change{
			Author:     author,
			Branch:     name,
			Revision:   ch.ToHash,
			When:       when,
			Repository: repoURL,
			Project:    project,
			Properties: props("event", "repo:refs_changed"),
		}
		if browse != "" {
			c.Revlink = browse + "/commits/" + ch.ToHash
		}
		if tag {
			c.Category = CategoryTag
		}
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		return nil, "the push only deleted refs", nil
	}
	return cs, "", nil
}
