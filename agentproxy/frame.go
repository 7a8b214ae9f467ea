package agentproxy

import (
	"encoding/binary"
	"fmt"
	"io"
)

// MaxMessageSize is OpenSSH's limit on one agent message (AGENT_MAX_LEN in
// ssh-agent.c, 256 KiB). x/crypto's server would accept 16 MiB, so frames
// are checked here before it allocates them.
const MaxMessageSize = 256 << 10

// frameLimiter sits between a client connection and agent.ServeAgent. It
// reads the 4-byte length of each message first and fails the connection
// when the length is over max, so an oversized message is never allocated.
type frameLimiter struct {
	r       io.Reader
	w       io.Writer
	max     uint32
	pending uint32 // bytes of the current message body not yet passed on
	hdr     [4]byte
	hdrLeft int // header bytes not yet passed on
}

// ErrMessageTooLarge closes a connection that sent an oversized message.
type ErrMessageTooLarge struct{ Size uint32 }

func (e ErrMessageTooLarge) Error() string {
	return fmt.Sprintf("agent message of %d bytes exceeds the %d-byte limit", e.Size, MaxMessageSize)
}

func newFrameLimiter(rw io.ReadWriter, max uint32) *frameLimiter {
	return &frameLimiter{r: rw, w: rw, max: max}
}

func (f *frameLimiter) Read(p []byte) (int, error) {
	if f.pending == 0 && f.hdrLeft == 0 {
		if _, err := io.ReadFull(f.r, f.hdr[:]); err != nil {
			return 0, err
		}
		n := binary.BigEndian.Uint32(f.hdr[:])
		if n > f.max {
			return 0, ErrMessageTooLarge{Size: n}
		}
		f.pending, f.hdrLeft = n, 4
	}
	if f.hdrLeft > 0 {
		n := copy(p, f.hdr[4-f.hdrLeft:])
		f.hdrLeft -= n
		return n, nil
	}
	if uint32(len(p)) > f.pending {
		p = p[:f.pending]
	}
	n, err := f.r.Read(p)
	f.pending -= uint32(n)
	return n, err
}

func (f *frameLimiter) Write(p []byte) (int, error) { return f.w.Write(p) }
