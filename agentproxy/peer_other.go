//go:build !linux && !darwin && !freebsd

package agentproxy

import (
	"errors"
	"net"
	"os"
	"runtime"
)

// On a platform without a peer-identity implementation every connection is
// refused (peerCred fails) and the process table is empty, so every rule
// that needs a fact about the peer fails closed.

func peerCred(*net.UnixConn) (pid, uid int, err error) {
	return 0, 0, errors.New("peer credentials are not implemented on " + runtime.GOOS)
}

type noProcs struct{}

func systemProcs(string) procTable                    { return noProcs{} }
func (noProcs) proc(int) (procInfo, error)            { return procInfo{}, errNoProcInfo }
func (noProcs) args(int) ([]string, error)            { return nil, errNoProcInfo }
func statExecutable(string, int) (os.FileInfo, error) { return nil, errNoProcInfo }
func selfExecutable() (os.FileInfo, error)            { return nil, errNoProcInfo }

// peerIdentitySource is reported in status.
const peerIdentitySource = "none on this platform: every connection is refused"
