package webui

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
)

// Control endpoints speak Buildbot's JSON-RPC 2.0 dialect: a POST whose
// body is {"jsonrpc":"2.0","method":…,"id":…,"params":{…}}, answered with
// {"jsonrpc":"2.0","id":…,"result":…} or, with a 4xx/5xx status,
// {"jsonrpc":"2.0","id":…,"error":{"code":…,"message":…}}.

// JSON-RPC 2.0 error codes.
const (
	rpcParseError     = -32700
	rpcInvalidRequest = -32600
	rpcMethodNotFound = -32601
	rpcInvalidParams  = -32602
	rpcInternalError  = -32603
)

// maxRPCBody bounds a control request's body; real ones are tiny.
const maxRPCBody = 1 << 20

type rpcRequest struct {
	JSONRPC string          `json:"jsonrpc"`
	Method  string          `json:"method"`
	ID      json.RawMessage `json:"id"`
	Params  json.RawMessage `json:"params"`
}

type rpcResult struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result"`
}

type rpcFailure struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   rpcErrorBody    `json:"error"`
}

type rpcErrorBody struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// rpcError is an error with the JSON-RPC code and HTTP status to report it with.
type rpcError struct {
	status, code int
	msg          string
}

func (e *rpcError) Error() string   { return e.msg }
func (e *rpcError) HTTPStatus() int { return e.status }

func rpcErrorf(status, code int, format string, args ...any) error {
	return &rpcError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// rpcFunc handles one decoded JSON-RPC call and returns its result.
type rpcFunc func(r *http.Request, call rpcRequest) (any, error)

// rpc adapts f to http.Handler, decoding the call and encoding the reply.
//
// The body must be sent as application/json: browsers cannot send that
// cross-site without a CORS preflight, which this server never grants, so
// the requirement keeps other sites from forcing or stopping builds through
// a visitor's browser.
func (s *Server) rpc(f rpcFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		call, err := decodeRPC(w, r)
		if err == nil {
			var res any
			res, err = f(r, call)
			if err == nil {
				writeJSON(w, http.StatusOK, rpcResult{JSONRPC: "2.0", ID: rpcID(call.ID), Result: res})
				return
			}
		}
		st := s.logIfInternal(r, err)
		code := rpcInternalError
		var re *rpcError
		switch {
		case errors.As(err, &re):
			code = re.code
		case st < 500:
			code = rpcInvalidParams
		}
		challenge(w, st) // auth.go
		writeJSON(w, st, rpcFailure{JSONRPC: "2.0", ID: rpcID(call.ID), Error: rpcErrorBody{Code: code, Message: clientMessage(err, st)}})
	})
}

func decodeRPC(w http.ResponseWriter, r *http.Request) (rpcRequest, error) {
	var call rpcRequest
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return call, rpcErrorf(http.StatusUnsupportedMediaType, rpcInvalidRequest, "Content-Type: want application/json, got %q", r.Header.Get("Content-Type"))
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRPCBody))
	if err := dec.Decode(&call); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return call, rpcErrorf(http.StatusRequestEntityTooLarge, rpcInvalidRequest, "request body larger than %d bytes", maxRPCBody)
		}
		return call, rpcErrorf(http.StatusBadRequest, rpcParseError, "invalid JSON: %v", err)
	}
	if call.JSONRPC != "2.0" {
		return call, rpcErrorf(http.StatusBadRequest, rpcInvalidRequest, "jsonrpc: want \"2.0\", got %q", call.JSONRPC)
	}
	return call, nil
}

// rpcID is the id to echo: the caller's, or null.
func rpcID(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return json.RawMessage("null")
	}
	return id
}

// rpcParams decodes the params object into its members; absent or null
// params are an empty object.
func rpcParams(call rpcRequest) (map[string]json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(call.Params) == 0 || string(call.Params) == "null" {
		return m, nil
	}
	if err := json.Unmarshal(call.Params, &m); err != nil {
		return nil, rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "params: want an object")
	}
	return m, nil
}

func stringParam(name string, raw json.RawMessage) (string, error) {
	var v string
	// Unmarshal accepts null as "no change"; a parameter sent as null is a mistake.
	if err := json.Unmarshal(raw, &v); err != nil || string(raw) == "null" {
		return "", rpcErrorf(http.StatusBadRequest, rpcInvalidParams, "%s: want a string, got %s", name, raw)
	}
	return v, nil
}
