//go:build !unix

package agentproxy

func (c *conn) fill() (int, error) { return c.fillPlain() }
