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
	var n int
	var rerr error
	err := c.raw.Read(func(fd uintptr) bool {
		if c.frameBuf == nil {
			c.frameBuf = frameBufs.Get().(*[frameBufSize]byte)
		}
		for {
			n, rerr = syscall.Read(int(fd), c.frameBuf[c.rend:])
			if rerr != syscall.EINTR {
				break
			}
		}
		if rerr == syscall.EAGAIN {
			c.releaseFrameBuf()
			return false // wait until readable
		}
		return true
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	c.rend += n
	return n, nil
}
