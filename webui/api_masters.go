package webui

import (
	"net/http"
	"os"
)

// masterJSON is Buildbot's master resource, with the configuration's state
// added: when it was loaded and how the last reconfig went.
type masterJSON struct {
	MasterID        int64    `json:"masterid"`
	Name            string   `json:"name"`
	Active          bool     `json:"active"`
	ConfigFile      string   `json:"config_file"`       // extension
	ConfigSummary   string   `json:"config_summary"`    // extension
	ConfigLoadedAt  unixTime `json:"config_loaded_at"`  // extension
	ReconfigError   *string  `json:"reconfig_error"`    // extension: the last failed reconfig, null if none
	ReconfigErrorAt unixTime `json:"reconfig_error_at"` // extension
}

// GET /api/v2/masters: this master (there is one per database for now).
func (s *Server) listMasters(w http.ResponseWriter, r *http.Request) error {
	st := s.m.ConfigStatus()
	host, _ := os.Hostname()
	m := masterJSON{
		MasterID:        1,
		Name:            host,
		Active:          true,
		ConfigFile:      st.Path,
		ConfigSummary:   st.Summary,
		ConfigLoadedAt:  unixTime(st.LoadedAt),
		ReconfigErrorAt: unixTime(st.LastErrorAt),
	}
	if st.LastError != "" {
		m.ReconfigError = &st.LastError
	}
	writeCollection(w, "masters", []masterJSON{m})
	return nil
}
