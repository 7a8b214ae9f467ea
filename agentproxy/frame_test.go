package agentproxy

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"

	"github.com/netkingdom/ops-warden/catalog"
	"github.com/netkingdom/ops-warden/internal/hintcall"
)

// TestRouterFrameBoundaries: the frame reader answers every frame once,
// in order, however the client's bytes arrive: several frames in one
// write (the next one left in the buffer), a frame a byte at a time, and a
// frame larger than the frame buffer, which goes upstream byte for byte.
func TestRouterFrameBoundaries(t *testing.T) {
	upSock, upLog := recordingUpstream(t, func(_ int, body []byte) []byte { return frameOf(msgSuccess) })
	env := startServer(t, func(cfg *Config, _ *catalog.Catalog) { cfg.Upstream = upSock })
	c := dialRaw(t, env.socket)
	c.SetDeadline(time.Now().Add(20 * time.Second))
	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	readReply := func() []byte {
		t.Helper()
		var hdr [4]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			t.Fatal(err)
		}
		body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatal(err)
		}
		return body
	}
	big := append([]byte{200}, bytes.Repeat([]byte{7}, 3*frameBufSize)...)
	unknown := []byte{201, 1, 2, 3}

	// Three frames and half of a fourth in one write, then the rest.
	var burst []byte
	burst = append(burst, frame([]byte{1})...) // protocol 1: failure
	burst = append(burst, frame(unknown)...)   // upstream: success
	burst = append(burst, frame([]byte{1})...)
	fourth := frame(big)
	burst = append(burst, fourth[:frameBufSize/2]...)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]byte{replyFailure, {msgSuccess}, replyFailure} {
		if got := readReply(); !bytes.Equal(got, want) {
			t.Fatalf("reply %d: %v, want %v", i, got, want)
		}
	}
	if _, err := c.Write(fourth[frameBufSize/2:]); err != nil {
		t.Fatal(err)
	}
	if got := readReply(); !bytes.Equal(got, []byte{msgSuccess}) {
		t.Fatalf("large frame: reply %v", got)
	}
	// A frame a byte at a time.
	for _, b := range frame(unknown) {
		if _, err := c.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	if got := readReply(); !bytes.Equal(got, []byte{msgSuccess}) {
		t.Fatalf("byte-wise frame: reply %v", got)
	}
	got := upLog.snapshot()
	if len(got) != 1 || len(got[0]) != 3 || !bytes.Equal(got[0][0], unknown) || !bytes.Equal(got[0][1], big) || !bytes.Equal(got[0][2], unknown) {
		t.Fatalf("upstream received %d connections; frames not passed unchanged", len(got))
	}
}

// TestClientReadsWhatTheAgentMaySend: the extension client's reply bound
// is the agent's message bound.
func TestClientReadsWhatTheAgentMaySend(t *testing.T) {
	if hintcall.MaxReply != MaxMessageSize {
		t.Fatalf("hintcall.MaxReply %d, agentproxy.MaxMessageSize %d", hintcall.MaxReply, MaxMessageSize)
	}
}
