package proto

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/gorilla/websocket"
)

func TestDecodeResume(t *testing.T) {
	tests := []struct {
		name string
		in   any
		want string // the decoded list, or the error's text
	}{
		{"round trip", ResumeFields(ResumeSent, []ResumeCommand{{"1", 3}, {"7", 0}}), "[{1 3} {7 0}]"},
		{"from the wire", Message{"commands": []any{map[string]any{"command_id": int8(4), "sent": uint16(2)}}}, "[{4 2}]"},
		{"no list", map[string]any{}, "[]"},
		{"nil payload", nil, "starforge_resume: no payload"},
		{"not a map", "x", "starforge_resume: want a map, got string"},
		{"list not a list", map[string]any{"commands": "1"}, "starforge_resume: commands is string, not a list"},
		{"entry not a map", map[string]any{"commands": []any{1}}, "starforge_resume: commands[0] is int, not a map"},
		{"no id", map[string]any{"commands": []any{map[string]any{"sent": 1}}}, "starforge_resume: commands[0]: missing command_id"},
		{"no count", map[string]any{"commands": []any{map[string]any{"command_id": "1"}}}, `starforge_resume: commands[0]: missing or negative "sent"`},
		{"negative count", map[string]any{"commands": []any{map[string]any{"command_id": "1", "sent": -2}}}, `starforge_resume: commands[0]: missing or negative "sent"`},
		{"count not a number", map[string]any{"commands": []any{map[string]any{"command_id": "1", "sent": "2"}}}, `starforge_resume: commands[0]: argument "sent": want integer, got string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeResume(tt.in, ResumeSent)
			out := fmt.Sprint(got)
			if err != nil {
				out = err.Error()
			} else if got == nil {
				out = "[]"
			}
			if out != tt.want {
				t.Fatalf("got %s, want %s", out, tt.want)
			}
		})
	}
}

func TestTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&websocket.CloseError{Code: websocket.CloseAbnormalClosure}, true},
		{fmt.Errorf("read: %w", &websocket.CloseError{Code: websocket.CloseNormalClosure, Text: "worker stopping"}), false},
		{fmt.Errorf("read: %w", &websocket.CloseError{Code: websocket.CloseGoingAway}), false},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{errors.New("malformed frame (3 bytes): bad"), false},
		{fmt.Errorf("frame larger than the limit: %w", websocket.ErrReadLimit), false},
	}
	for _, tt := range tests {
		if got := Transient(tt.err); got != tt.want {
			t.Errorf("Transient(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	// A silent peer: the read deadline's timeout is a net.Error.
	if !Transient(fmt.Errorf("peer silent past the ping deadline: %w", timeoutErr{})) {
		t.Error("a read timeout is not transient")
	}
	if Transient(nil) {
		t.Error("nil is transient")
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }
