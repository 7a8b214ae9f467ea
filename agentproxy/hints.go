package agentproxy

import (
	"sync"
	"time"
)

// hint is what `warden-agent hint` told us about one ssh process.
type hint struct {
	HintRequest
	// id is the connection id the ssh process's connection will carry.
	id string
	// start is the ssh process's start time, so a reused pid does not
	// inherit another process's hint.
	start uint64
	at    time.Time
	// refused is set when the target was refused at hint time: nothing is
	// listed for this process.
	refused string
	// decided is the policy's allow for this process's target, reused when
	// the process lists keys so a confirm rule asks once per login.
	decided *AuthDecision
	// claimed is set once the process's first agent connection took id.
	claimed bool
}

// Hints older than hintTTL are dropped; ssh connects to the agent within
// its ConnectTimeout of running Match exec. maxHints bounds the table.
const (
	hintTTL  = 10 * time.Minute
	maxHints = 4096
)

// hintStore maps ssh pids to their hints.
type hintStore struct {
	mu    sync.Mutex // guards byPid
	byPid map[int]*hint
}

func newHintStore() *hintStore { return &hintStore{byPid: map[int]*hint{}} }

func (h *hintStore) put(x *hint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.byPid) >= maxHints {
		h.pruneLocked(x.at)
		for pid := range h.byPid { // still full: drop an arbitrary one
			if len(h.byPid) < maxHints {
				break
			}
			delete(h.byPid, pid)
		}
	}
	h.byPid[x.SSHPid] = x
}

// get returns a copy of the live hint for pid whose process start time
// matches.
func (h *hintStore) get(pid int, start uint64, now time.Time) *hint {
	h.mu.Lock()
	defer h.mu.Unlock()
	x := h.byPid[pid]
	if x == nil || now.Sub(x.at) > hintTTL || x.start != start {
		return nil
	}
	c := *x
	return &c
}

// claim is get for a new agent connection of the process; first is true
// for its first one, the login's, which continues the hint's id. Later
// ones (agent forwarding channels: each is a new connection from the same
// ssh process) get ids of their own.
func (h *hintStore) claim(pid int, start uint64, now time.Time) (x *hint, first bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur := h.byPid[pid]
	if cur == nil || now.Sub(cur.at) > hintTTL || cur.start != start {
		return nil, false
	}
	first, cur.claimed = !cur.claimed, true
	c := *cur
	return &c, first
}

// update changes the stored hint x under the lock: once stored, the ssh
// process's connection may read it.
func (h *hintStore) update(x *hint, f func(*hint)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.byPid[x.SSHPid]; cur == x {
		f(cur)
	}
}

func (h *hintStore) pruneLocked(now time.Time) {
	for pid, x := range h.byPid {
		if now.Sub(x.at) > hintTTL {
			delete(h.byPid, pid)
		}
	}
}
