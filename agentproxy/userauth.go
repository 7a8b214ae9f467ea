package agentproxy

import (
	"errors"
	"fmt"

	"golang.org/x/crypto/ssh"
)

// Userauth methods whose signature data an agent may be asked to sign
// (RFC 4252 §7 and PROTOCOL "publickey-hostbound-v00@openssh.com").
const (
	methodPublicKey = "publickey"
	methodHostbound = "publickey-hostbound-v00@openssh.com"
	msgUserauthReq  = 50 // SSH_MSG_USERAUTH_REQUEST
)

// userauthRequest is the data ssh asks an agent to sign for a public key
// login.
type userauthRequest struct {
	SessionID []byte
	User      string
	Service   string
	Method    string
	Algorithm string
	PublicKey []byte
	// HostKey is set for the hostbound method, and HostKeyBlob is its
	// wire form as sent.
	HostKey     ssh.PublicKey
	HostKeyBlob []byte
}

var errNotUserauth = errors.New("data is not a public key userauth request")

// parseUserauth parses sign-request data as a userauth request, the way
// ssh-agent.c's parse_userauth_request does:
//
//	string    session identifier
//	byte      SSH_MSG_USERAUTH_REQUEST
//	string    user name
//	string    service name
//	string    "publickey" | "publickey-hostbound-v00@openssh.com"
//	boolean   TRUE
//	string    public key algorithm name
//	string    public key
//	[string   server host key]   (hostbound method only)
func parseUserauth(data []byte) (*userauthRequest, error) {
	var r userauthRequest
	var ok bool
	if r.SessionID, data, ok = parseString(data); !ok || len(r.SessionID) == 0 || len(r.SessionID) > maxSessionIDLen {
		return nil, fmt.Errorf("%w: session id", errNotUserauth)
	}
	if len(data) < 1 || data[0] != msgUserauthReq {
		return nil, fmt.Errorf("%w: message type", errNotUserauth)
	}
	data = data[1:]
	var user, service, method, alg, key []byte
	if user, data, ok = parseString(data); !ok {
		return nil, fmt.Errorf("%w: user", errNotUserauth)
	}
	if service, data, ok = parseString(data); !ok {
		return nil, fmt.Errorf("%w: service", errNotUserauth)
	}
	if method, data, ok = parseString(data); !ok {
		return nil, fmt.Errorf("%w: method", errNotUserauth)
	}
	r.User, r.Service, r.Method = string(user), string(service), string(method)
	if r.Method != methodPublicKey && r.Method != methodHostbound {
		return nil, fmt.Errorf("%w: method %q", errNotUserauth, r.Method)
	}
	if len(data) < 1 || data[0] != 1 {
		return nil, fmt.Errorf("%w: signature flag not set", errNotUserauth)
	}
	data = data[1:]
	if alg, data, ok = parseString(data); !ok {
		return nil, fmt.Errorf("%w: algorithm", errNotUserauth)
	}
	if key, data, ok = parseString(data); !ok {
		return nil, fmt.Errorf("%w: public key", errNotUserauth)
	}
	r.Algorithm, r.PublicKey = string(alg), key
	if r.Method == methodHostbound {
		var hk []byte
		if hk, data, ok = parseString(data); !ok {
			return nil, fmt.Errorf("%w: host key", errNotUserauth)
		}
		k, err := ssh.ParsePublicKey(hk)
		if err != nil {
			return nil, fmt.Errorf("%w: host key: %v", errNotUserauth, err)
		}
		r.HostKey, r.HostKeyBlob = k, hk
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errNotUserauth, len(data))
	}
	return &r, nil
}
