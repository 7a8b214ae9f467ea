package main

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// What ssh sends an agent, as agentproxy's tests build it
// (PROTOCOL.agent "session-bind@openssh.com"; RFC 4252 §7 and PROTOCOL
// "publickey-hostbound-v00@openssh.com").
const (
	extSessionBind  = "session-bind@openssh.com"
	extQuery        = "query"
	methodHostbound = "publickey-hostbound-v00@openssh.com"
	msgUserauthReq  = 50 // SSH_MSG_USERAUTH_REQUEST
	msgExtension    = 27 // SSH_AGENTC_EXTENSION
)

// bind sends session-bind@openssh.com signed by host, as ssh does after
// key exchange.
func bind(a agent.ExtendedAgent, host ssh.Signer, sid []byte) error {
	sig, err := host.Sign(rand.Reader, sid)
	if err != nil {
		return err
	}
	_, err = a.Extension(extSessionBind, ssh.Marshal(struct {
		HostKey    []byte
		SessionID  []byte
		Signature  []byte
		Forwarding bool
	}{host.PublicKey().Marshal(), sid, ssh.Marshal(sig), false}))
	return err
}

// userauthData is the data ssh asks an agent to sign for a hostbound
// public key login.
func userauthData(sid []byte, user string, key, hostKey ssh.PublicKey) []byte {
	out := ssh.Marshal(struct {
		SessionID []byte
		Type      byte
		User      string
		Service   string
		Method    string
		Sign      bool
		Algo      string
		Key       []byte
	}{sid, msgUserauthReq, user, "ssh-connection", methodHostbound, true, key.Type(), key.Marshal()})
	return append(out, ssh.Marshal(struct{ K []byte }{hostKey.Marshal()})...)
}

func newSessionID() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

// rawQuery sends the "query" extension on c and reads one reply frame,
// without starting a client reader goroutine (the RSS measurement holds a
// thousand connections).
func rawQuery(c net.Conn) error {
	body := append([]byte{msgExtension}, ssh.Marshal(struct{ S string }{extQuery})...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)))
	if _, err := c.Write(append(frame, body...)); err != nil {
		return err
	}
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > 1<<20 {
		return errors.New("reply too large")
	}
	_, err := io.CopyN(io.Discard, c, int64(n))
	return err
}

// keyringServer serves x/crypto's agent.NewKeyring, holding one key, on a
// Unix socket until SIGTERM: the bare Go agent the others are compared to.
func keyringServer(args []string) error {
	fs := flag.NewFlagSet("keyring-server", flag.ContinueOnError)
	keyFile := fs.String("key", "", "OpenSSH private key `file` to load")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *keyFile == "" {
		return errors.New("usage: warden-bench keyring-server -key FILE SOCKET")
	}
	pem, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	priv, err := ssh.ParseRawPrivateKey(pem)
	if err != nil {
		return fmt.Errorf("key: %w", err)
	}
	kr := agent.NewKeyring()
	if err := kr.Add(agent.AddedKey{PrivateKey: priv, Comment: "bench-key-0"}); err != nil {
		return err
	}
	ln, err := net.Listen("unix", fs.Arg(0))
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			agent.ServeAgent(kr, c)
		}()
	}
}
