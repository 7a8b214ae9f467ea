package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// signWorker signs the same login request over and over on one
// connection, as ssh would sign it once per login.
type signWorker struct {
	nc   net.Conn
	a    agent.ExtendedAgent
	key  ssh.PublicKey
	data []byte
}

func (w *signWorker) op() error {
	_, err := w.a.SignWithFlags(w.key, w.data, 0)
	return err
}

func (w *signWorker) close() { w.nc.Close() }

// signKind is how a client picks the key it signs with.
type signKind int

const (
	// plainKey: the user's ed25519 key, known in advance (ssh-agent,
	// keyring); session-bind is sent and its refusal ignored (the bare
	// keyring has no extensions).
	plainKey signKind = iota
	// wardenCert: session-bind to the pinned host, List, sign with the
	// certificate warden listed first.
	wardenCert
	// proxiedKey: session-bind and List through warden, sign with the
	// user's key, which warden passes to ssh-agent.
	proxiedKey
)

// newSignWorker connects to socket and prepares a login request the
// agent accepts; the first signature is verified.
func newSignWorker(socket string, kind signKind, user ssh.PublicKey, host ssh.Signer, principal string) (*signWorker, error) {
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	w := &signWorker{nc: nc, a: agent.NewClient(nc)}
	fail := func(err error) (*signWorker, error) {
		nc.Close()
		return nil, err
	}
	sid := newSessionID()
	bindErr := bind(w.a, host, sid)
	switch kind {
	case plainKey:
		w.key = user
	case wardenCert, proxiedKey:
		if bindErr != nil {
			return fail(fmt.Errorf("session-bind: %w", bindErr))
		}
		keys, err := w.a.List()
		if err != nil {
			return fail(fmt.Errorf("list: %w", err))
		}
		for _, k := range keys {
			if kind == wardenCert && strings.HasPrefix(k.Comment, "warden:") {
				w.key, err = ssh.ParsePublicKey(k.Blob)
				if err != nil {
					return fail(err)
				}
				break
			}
			if kind == proxiedKey && bytes.Equal(k.Blob, user.Marshal()) {
				w.key = user
				break
			}
		}
		if w.key == nil {
			return fail(fmt.Errorf("the key to sign with is not listed (%d keys)", len(keys)))
		}
	}
	w.data = userauthData(sid, principal, w.key, host.PublicKey())
	sig, err := w.a.SignWithFlags(w.key, w.data, 0)
	if err != nil {
		return fail(fmt.Errorf("first signature: %w", err))
	}
	if err := w.key.Verify(w.data, sig); err != nil {
		return fail(fmt.Errorf("first signature does not verify: %w", err))
	}
	return w, nil
}

// listWorker asks for the identity list over and over, as `ssh-add -l`
// does (no session-bind).
type listWorker struct {
	nc   net.Conn
	a    agent.ExtendedAgent
	want int
}

func newListWorker(socket string, want int) (*listWorker, error) {
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return nil, err
	}
	return &listWorker{nc: nc, a: agent.NewClient(nc), want: want}, nil
}

func (w *listWorker) op() error {
	keys, err := w.a.List()
	if err != nil {
		return err
	}
	if len(keys) < w.want {
		return fmt.Errorf("listed %d keys, want at least %d", len(keys), w.want)
	}
	return nil
}

func (w *listWorker) close() { w.nc.Close() }

var errNoCert = errors.New("no warden certificate listed")

// login is what ssh does with an agent before the first signature: a new
// connection, session-bind to host, List. It succeeds when a warden
// certificate is listed.
func login(socket string, host ssh.Signer) error {
	nc, err := net.Dial("unix", socket)
	if err != nil {
		return err
	}
	defer nc.Close()
	a := agent.NewClient(nc)
	if err := bind(a, host, newSessionID()); err != nil {
		return fmt.Errorf("session-bind: %w", err)
	}
	keys, err := a.List()
	if err != nil {
		return err
	}
	for _, k := range keys {
		if strings.HasPrefix(k.Comment, "warden:") {
			return nil
		}
	}
	return errNoCert
}
