package webui

import "net/http"

// pagesRoutes adds the builders, console, grid and stats pages, the stats
// and artifacts API and source stamps.
func (s *Server) pagesRoutes(api, mux *http.ServeMux) {
	api.Handle("GET /api/v2/sourcestamps", s.api(s.listSourceStamps))
	api.Handle("GET /api/v2/sourcestamps/{id}", s.api(s.getSourceStamp))
}
