package webui

import "net/http"

// pagesRoutes adds the builders, console, grid and stats pages, the stats
// and artifacts API and source stamps.
func (s *Server) pagesRoutes(api, mux *http.ServeMux) {
	api.Handle("GET /api/v2/sourcestamps", s.api(s.listSourceStamps))
	api.Handle("GET /api/v2/sourcestamps/{id}", s.api(s.getSourceStamp))
	api.Handle("GET /api/v2/stats", s.api(s.apiStats))
	api.Handle("GET /api/v2/builds/{build}/artifacts", s.api(s.listArtifacts))
	api.Handle("GET /api/v2/artifacts/{id}", s.api(s.getArtifact))

	mux.Handle("GET /builders", s.page(s.buildersPage))
	mux.Handle("GET /console", s.page(s.consolePage))
	mux.Handle("GET /grid", s.page(s.gridPage))
	mux.Handle("GET /stats", s.page(s.statsPage))
	mux.Handle("GET /artifacts/{id}/download", s.page(s.downloadArtifact))
	s.artifactRoutes(api, mux) // page_artifacts.go
}
