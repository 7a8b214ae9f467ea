//go:build unix

package agentproxy

import (
	"io"
	"syscall"
)

// fill reads what the client has sent into the frame buffer. The buffer is
// taken from the pool only when there is something to read: while the
// read would block (an idle connection), it goes back, so idle
// connections hold no buffer.
func (c *conn) fill() (int, error) {
	if c.raw == nil {
		return c.fillPlain()
	}
	if c.readFn == nil { // made once: a closure per read was an allocation per request
		c.readFn = c.readSome
	}
	c.readN, c.readErr = 0, nil
	if err := c.raw.Read(c.readFn); err != nil {
		return 0, err
	}
	switch {
	case c.readErr != nil:
		return 0, c.readErr
	case c.readN == 0:
		return 0, io.EOF
	}
	c.rend += c.readN
	return c.readN, nil
}

// readSome is the RawConn.Read callback of fill: false means "wait until
// readable".
func (c *conn) readSome(fd uintptr) bool {
	if c.frameBuf == nil {
		c.frameBuf = frameBufs.Get().(*[frameBufSize]byte)
	}
	for {
		c.readN, c.readErr = syscall.Read(int(fd), c.frameBuf[c.rend:])
		if c.readErr != syscall.EINTR {
			break
		}
	}
	if c.readErr == syscall.EAGAIN {
		c.readN, c.readErr = 0, nil
		c.releaseFrameBuf()
		return false
	}
	if c.readN < 0 {
		c.readN = 0
	}
	return true
}
