// Package proto implements Buildbot's msgpack_experimental_v7 worker protocol,
// shared by the Starforge master and the starforge-worker agent.
//
// A connection is a WebSocket that carries one msgpack map per binary frame.
// Either side sends requests ({"op": ..., "seq_number": n, ...}) and answers
// each request it receives with exactly one response
// ({"op": "response", "seq_number": n, "result": ...}, plus
// "is_exception": true on error). Sequence numbers are per side and per
// connection, and responses may arrive in any order.
//
// The package must stay free of master-only dependencies (SQLite, Starlark):
// the worker is built with CGO_ENABLED=0 and imports it.
package proto
