package agentproxy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The agent socket reaches further than the local user: `ssh -A` gives a
// remote host a channel into it, and every process of the same uid can
// connect. What a connection may do is decided here, from what is
// verified about it, the way identity_permitted does in OpenSSH's
// ssh-agent.c. Every handler asks; nothing that failed to verify counts as
// local. docs/security.md has the table and the tests behind each row.

// trustClass is what is verified about a connection's session binds.
type trustClass int

const (
	// trustUnbound: no bind sent. A local program (ssh-add, a tunnel
	// tool, warden-agent itself), or a client that never binds.
	trustUnbound trustClass = iota
	// trustLogin: the first bind verified and was not for forwarding;
	// this is ssh's own connection for one login.
	trustLogin
	// trustForwarded: a verified forwarding bind: the connection carries
	// a remote host's requests (ssh -A).
	trustForwarded
	// trustTainted: a bind failed or could not be verified. Nothing on
	// it is trusted for warden's own certificates or extensions.
	trustTainted
)

func (t trustClass) String() string {
	return [...]string{"unbound", "login", "forwarded", "tainted"}[t]
}

// trust returns the connection's class.
func (c *conn) trust() trustClass {
	switch {
	case c.taint != "":
		return trustTainted
	case len(c.binds) == 0:
		return trustUnbound
	case c.binds[0].Forwarding:
		return trustForwarded
	}
	return trustLogin
}

// action is something a connection asks for that not every connection
// may do.
type action int

const (
	// actExtension: warden's own extensions (status, sign-cert).
	actExtension action = iota
	// actHint: the hint extension, which warden-hint may send too.
	actHint
	// actAddKey: add a key or a PKCS#11 provider to the user's agent.
	actAddKey
	// actRemoveKey: remove keys, one or all, or a PKCS#11 provider.
	actRemoveKey
	// actLock, actUnlock: lock and unlock the agent.
	actLock
	actUnlock
)

var errNotPermitted = errors.New("not permitted on this connection")

// permit returns nil when the connection may do a, or an error saying why
// not. Listing and signing with warden certificates have their own,
// finer checks (resolve, signWarden) that start from the same class.
func (c *conn) permit(a action) error {
	class := c.trust()
	switch a {
	case actExtension, actHint:
		if class != trustUnbound {
			return fmt.Errorf("%w: warden's extensions are refused on a %s connection", errNotPermitted, class)
		}
		if !c.s.isWardenProgram(c.peer) && !(a == actHint && c.s.isHintProgram(c.peer)) {
			return fmt.Errorf("%w: warden's extensions answer only the warden-agent program (and the hint its warden-hint) (caller %s)", errNotPermitted, orUnknown(c.peer.Exe))
		}
	case actAddKey:
		if class == trustForwarded || class == trustTainted {
			return fmt.Errorf("%w: adding keys is refused on a %s connection", errNotPermitted, class)
		}
	case actRemoveKey, actLock, actUnlock:
		if class != trustUnbound {
			return fmt.Errorf("%w: refused on a %s connection", errNotPermitted, class)
		}
		// ssh itself never removes keys or locks the agent; a connection
		// from the ssh client that sent no bind is a forwarded channel of
		// a client that does not bind (OpenSSH before 8.9).
		if c.peerIsSSHClient() {
			return fmt.Errorf("%w: refused on a connection from the ssh client (a forwarded agent of a client without session-bind)", errNotPermitted)
		}
	}
	return nil
}

// peerIsSSHClient reports whether the peer is the OpenSSH client, by the
// executable the kernel reports (not the process's own name, which it can
// set).
func (c *conn) peerIsSSHClient() bool {
	// The kernel adds " (deleted)" to the link of a file removed since it
	// was started (an upgraded ssh).
	exe := strings.TrimSuffix(c.peer.Exe, " (deleted)")
	return exe != "" && filepath.Base(exe) == "ssh"
}

// isWardenProgram reports whether p runs the same executable file as this
// agent: the file the kernel maps for the peer process, compared by device
// and inode with this program's own (read once at start, so an upgrade on
// disk does not change it). A renamed copy of another program does not
// pass, and neither does a peer whose executable cannot be read or whose
// pid the platform does not give.
func (s *Server) isWardenProgram(p Peer) bool {
	return runsThisExecutable(s.cfg.ProcRoot, p.Pid)
}

// isHintProgram reports whether p runs the warden-hint program named by
// Config.HintProgram (installed beside warden-agent): the same check by
// device and inode, against the file at that path now, so an upgrade that
// replaces both programs keeps working. It speaks only the hint.
func (s *Server) isHintProgram(p Peer) bool {
	if s.cfg.HintProgram == "" {
		return false
	}
	fi, err := os.Stat(s.cfg.HintProgram)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	return runsFile(s.cfg.ProcRoot, p.Pid, fi)
}

// isSelfOrDescendant reports whether the ssh pid a hint names is the
// peer itself or one of its ancestors: ssh runs Match exec through a
// shell, so the hint command is ssh's child or grandchild. A process can
// therefore speak only for its own ssh, never switch another one's route.
func (c *conn) isSelfOrDescendant(sshPid int) bool {
	if c.peer.Pid <= 1 {
		return false // the platform gave no pid: fail closed
	}
	if sshPid == c.peer.Pid {
		return true
	}
	// The chain read when the peer connected holds the nearest ancestors;
	// only a pid beyond it is looked up again.
	for _, p := range c.peer.Chain {
		if p.Pid == sshPid {
			return true
		}
	}
	return len(c.peer.Chain) >= maxChain && descendantOf(c.s.cfg.ProcRoot, c.peer.Pid, sshPid)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
