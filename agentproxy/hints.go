package agentproxy

import (
	"sync"
	"time"

	"github.com/netkingdom/ops-warden/signer"
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
	// unrecorded writes the hint record of a hint answered from memory
	// (hintStore.answer); it is written when the ssh process first
	// connects, so ssh processes that ride a ControlMaster and never reach
	// the agent leave only a count (hintMemo.answered).
	unrecorded func()
}

// hintKey is what makes two hints the same question: ssh's %r, %h, %p.
type hintKey struct {
	user, host string
	port       int
}

// hintMemo is a hint evaluated in full and accepted with a certificate:
// identical hints within hintRepeatWindow are answered from it (an
// Ansible task runs several ssh per host, and every ssh riding a
// ControlMaster still runs Match exec).
type hintMemo struct {
	id               string // the connection id of the full hint
	route, principal string
	entry            *signer.Entry // the certificate it obtained
	at               time.Time
	// answered counts the hints answered from this one; the next full
	// hint of the target records it.
	answered int
}

// Hints older than hintTTL are dropped; ssh connects to the agent within
// its ConnectTimeout of running Match exec. maxHints bounds the table.
const (
	hintTTL  = 10 * time.Minute
	maxHints = 4096
	// hintRepeatWindow bounds how long a full hint answers identical ones:
	// the policy shown on the terminal is at most this old (it runs again
	// when an ssh process answered from memory connects).
	hintRepeatWindow = 30 * time.Second
)

// hintStore maps ssh pids to their hints, and targets to the last full
// hint that accepted them.
type hintStore struct {
	mu     sync.Mutex // guards byPid and recent
	byPid  map[int]*hint
	recent map[hintKey]*hintMemo
}

func newHintStore() *hintStore { return &hintStore{byPid: map[int]*hint{}} }

// memo returns a copy of the live memo of k.
func (h *hintStore) memo(k hintKey, now time.Time) *hintMemo {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.recent[k]
	if m == nil || now.Sub(m.at) > hintRepeatWindow || now.Before(m.at) {
		return nil
	}
	c := *m
	return &c
}

// answer stores x, a hint answered from the memo of k with id memoID, and
// counts it on that memo. It returns false (storing nothing) when the
// memo has been replaced meanwhile.
func (h *hintStore) answer(k hintKey, memoID string, x *hint) bool {
	h.mu.Lock()
	m := h.recent[k]
	if m == nil || m.id != memoID {
		h.mu.Unlock()
		return false
	}
	m.answered++
	h.mu.Unlock()
	h.put(x)
	return true
}

// forget drops the memo of k (a full hint evaluates the target again) and
// returns how many hints it answered.
func (h *hintStore) forget(k hintKey) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.recent[k]
	if m == nil {
		return 0
	}
	delete(h.recent, k)
	return m.answered
}

// remember makes m the memo of k.
func (h *hintStore) remember(k hintKey, m *hintMemo) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recent == nil {
		h.recent = map[hintKey]*hintMemo{}
	}
	if len(h.recent) >= maxHints {
		for k, old := range h.recent {
			if m.at.Sub(old.at) > hintRepeatWindow || len(h.recent) >= maxHints {
				delete(h.recent, k)
			}
		}
	}
	h.recent[k] = m
}

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
	cur := h.byPid[pid]
	if cur == nil || now.Sub(cur.at) > hintTTL || cur.start != start {
		h.mu.Unlock()
		return nil, false
	}
	first, cur.claimed = !cur.claimed, true
	c := *cur
	record := cur.unrecorded
	cur.unrecorded, c.unrecorded = nil, nil
	h.mu.Unlock()
	if first && record != nil {
		record()
	}
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
