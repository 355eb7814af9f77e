// Package webui serves Starforge's web pages and the REST API behind them.
//
// The REST API follows Buildbot's /api/v2 shapes so that Buildbot clients
// keep working: collections are {"<name>": [...], "meta": {"total": n}},
// times are unix seconds (with milliseconds) or null, results are
// Buildbot's integers or null while running, and control calls (force,
// stop) are JSON-RPC 2.0 POSTs. Errors are {"error": "<message>"} with a
// 4xx or 5xx status; a message about a parameter starts with its name.
//
//	GET  /api/v2/builders                          all builders
//	GET  /api/v2/builders/{id-or-name}             one builder
//	GET  /api/v2/builders/{id-or-name}/builds      ?limit=&before=
//	GET  /api/v2/builders/{id-or-name}/builds/{number}
//	GET  /api/v2/builds                            ?builderid=&workerid=&buildrequestid=&running=1&limit=&before=
//	GET  /api/v2/builds/{id}
//	POST /api/v2/builds/{id}                       JSON-RPC "stop" {"reason": …}
//	GET  /api/v2/builds/{id}/steps
//	GET  /api/v2/builds/{id}/properties            {"properties": [{"name": [value, source]}]}
//	GET  /api/v2/steps/{id}/logs
//	GET  /api/v2/logs/{id}
//	GET  /api/v2/logs/{id}/contents                ?first=&last= (0-based, inclusive)
//	GET  /api/v2/logs/{id}/raw                     text/plain download
//	GET  /api/v2/workers                           stored workers with the master's live state
//	GET  /api/v2/buildrequests                     ?pending=1&builderid=&limit=&before=
//	GET  /api/v2/forceschedulers
//	POST /api/v2/forceschedulers/{name}            JSON-RPC "force"
//
// Lists are newest first and paginated by keyset: pass the last id of a
// page as ?before= to get the next one. limit is 1 to 1000 (default 100).
// There are no offsets, so every page costs the same however many builds
// the store holds.
//
// The pages (/, /builders/{id}, /builders/{id}/builds/{number}, /workers)
// are rendered on the server with html/template. An embedded script keeps
// running builds and growing logs live through the same API and drives the
// force and stop buttons; nothing is loaded from outside the master, and
// the Content-Security-Policy forbids inline scripts.
package webui
