package main

// Relays: gms as an RTMP client of other servers (rtmpclient.go).
//
//   - push: every stream published here (or on one app) is forwarded to
//     another server, a platform's ingest or a second gms. A push is a
//     tap on the stream (hub.tap) with its own bounded queue, so a slow or
//     dead target costs the push its frames, never the publisher or the
//     viewers their time; it reconnects with back-off and starts again
//     at a keyframe, with the headers.
//   - pull (edge): a player asks for a name nobody publishes here, and
//     gms pulls it once from an origin, for every local player; the pull
//     ends a few seconds after the last player has left.
//   - static: a pull that starts with gms and never gives up.
//
// NMS v2 ran an ffmpeg per relay; its config's relay tasks and its
// /api/relay routes work here unchanged.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

const (
	relayRetryFirst = time.Second      // first wait before reconnecting
	relayRetryMax   = 30 * time.Second // back-off ceiling
	relayHealthy    = 10 * time.Second // a session that lasted this long resets the back-off
	pullLinger      = 5 * time.Second  // an on-demand pull ends this long after its last player left
)

// relayMode is what a relay does, with NMS's names.
type relayMode string

const (
	relayPush   relayMode = "push"
	relayPull   relayMode = "pull"   // on demand: while players watch
	relayStatic relayMode = "static" // always
)

// relayRule is one configured relay: a flag, an NMS relay task, or an API
// request.
type relayRule struct {
	ID   string // API relays: the id DELETE /api/relay/ID takes
	Mode relayMode
	App  string // the local app it applies to; "" any (push and pull)
	Name string // the local name; "" any (static and API relays name one)
	// URL is the remote side. With AppendName, the stream's name (push)
	// or APP/NAME (an edge's origin) is appended to it; otherwise it
	// names the remote stream exactly.
	URL        string
	AppendName bool
	// Origin: an edge's origin, rtmp://HOST[:PORT], to which the local
	// APP/NAME is appended; one of several tried in turn.
	Origin bool
}

// target is the remote URL for the local stream key.
func (r relayRule) target(key streamKey) string {
	if !r.AppendName {
		return r.URL
	}
	suffix := key.Name
	if r.Origin {
		suffix = key.App + "/" + key.Name
	}
	return withName(r.URL, suffix)
}

// withName is the URL raw with name appended to its path (before its
// query); raw itself when it does not parse (dialing says why).
func withName(raw, name string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/" + name
	u.RawPath = ""
	return u.String()
}

func (r relayRule) matches(key streamKey) bool {
	return (r.App == "" || r.App == key.App) && (r.Name == "" || r.Name == key.Name)
}

// relay is one running relay: a push of one publish, or a pull.
type relay struct {
	ID      string
	Mode    relayMode
	Key     streamKey
	url     string // the remote URL, credentials included: never shown
	shown   string // the remote URL as the API and logs show it
	masked  bool   // the URL's last path element is a stream key (a push to an exact name)
	Started time.Time
	bytes   atomic.Uint64 // sent (push) or received (pull), all sessions
	errs    atomic.Uint64 // failed sessions and dials
	rule    *relayRule    // the rule it runs for; nil for an edge's pulls
	stop    context.CancelFunc

	mu      sync.Mutex
	state   string // connecting, live, retrying, stopped
	lastErr string
}

func (r *relay) setState(state string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = state
	if err != nil {
		r.lastErr = redactErr(err.Error(), r.url, r.masked)
	}
}

// errText is err as a log line may show it: the relay's URL and its
// credentials hidden (see redactErr).
func (r *relay) errText(err error) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return redactErr(err.Error(), r.url, r.masked)
}

// relays runs every relay of a server.
type relays struct {
	hub    *hub
	log    *slog.Logger
	secret string          // -auth-secret: signs on-demand pulls, for origins that check plays with it
	ctx    context.Context // the server's; set by run
	wg     sync.WaitGroup

	mu      sync.Mutex
	rules   []*relayRule
	origins []*relayRule         // an edge's origins, tried in turn
	running map[string]*relay    // by id
	pulls   map[streamKey]*relay // pulls running, one per stream
}

func newRelays(cfg *config, h *hub, log *slog.Logger) (*relays, error) {
	rs := &relays{hub: h, log: log, secret: cfg.Secret, running: map[string]*relay{}, pulls: map[streamKey]*relay{}}
	for _, s := range cfg.RelayPush {
		app, u := "", s
		if i := strings.Index(s, "="); i > 0 && !strings.Contains(s[:i], "/") {
			app, u = s[:i], s[i+1:]
		}
		r, err := pushRule(app, u)
		if err != nil {
			return nil, fmt.Errorf("-relay-push %s: %w", redactRelayURL(u, false), err)
		}
		rs.rules = append(rs.rules, r)
	}
	for _, o := range cfg.Origins {
		if _, err := parseRTMPURL(withName(o, "app/name")); err != nil {
			return nil, fmt.Errorf("-origin %s: %w", redactRelayURL(o, false), err)
		}
		rs.origins = append(rs.origins, &relayRule{Mode: relayPull, URL: o, AppendName: true, Origin: true})
	}
	for i, t := range cfg.RelayTasks {
		r, err := t.rule()
		if err != nil {
			return nil, fmt.Errorf("relay.tasks[%d]: %w", i, err)
		}
		rs.rules = append(rs.rules, r)
	}
	return rs, nil
}

// pushRule makes a push to u: with an app only (rtmp://host/app) the
// stream's name is appended, as NMS does; with app and name it is the
// target exactly (a platform's stream key).
func pushRule(app, u string) (*relayRule, error) {
	r := &relayRule{Mode: relayPush, App: app, URL: u}
	if _, err := parseRTMPURL(u); err != nil {
		// Not APP/NAME: an app to which the name is appended.
		if _, err := parseRTMPURL(withName(u, "name")); err != nil {
			return nil, err
		}
		r.AppendName = true
		return r, nil
	}
	u2, _ := url.Parse(u)
	if strings.Count(strings.Trim(u2.Path, "/"), "/") == 0 {
		r.AppendName = true
	}
	return r, nil
}

// relayTaskConfig is one task of NMS v2's relay config.
type relayTaskConfig struct {
	App        string `json:"app"`
	Mode       string `json:"mode"` // push, pull or static
	Edge       string `json:"edge"` // the remote URL
	Name       string `json:"name"` // static: the local name
	AppendName *bool  `json:"appendName"`
}

func (t relayTaskConfig) rule() (*relayRule, error) {
	if !validName(t.App) {
		return nil, fmt.Errorf("app %q is not a valid name", t.App)
	}
	appendName := t.AppendName == nil || *t.AppendName
	r := &relayRule{Mode: relayMode(t.Mode), App: t.App, URL: t.Edge, AppendName: appendName}
	check := t.Edge
	switch r.Mode {
	case relayPush, relayPull:
		if appendName {
			check = withName(t.Edge, "name")
		}
	case relayStatic:
		if !validName(t.Name) {
			return nil, fmt.Errorf("static relay: name %q is not a valid name", t.Name)
		}
		r.Name, r.AppendName = t.Name, false
	default:
		return nil, fmt.Errorf("mode %q: want push, pull or static", t.Mode)
	}
	if _, err := parseRTMPURL(check); err != nil {
		return nil, fmt.Errorf("edge %s: %w", redactRelayURL(t.Edge, false), err)
	}
	return r, nil
}

// redactRelayURL is a relay's URL as the API and logs show it: no user
// or password, credentials in the query hidden, and, when the URL names
// its stream exactly (masked), the name hidden too: a platform's stream
// key is a credential.
func redactRelayURL(raw string, masked bool) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User = nil
	query := u.RawQuery
	u.RawQuery = ""
	shown := u.String()
	if i := strings.LastIndexByte(u.Path, '/'); masked && i > 0 {
		u.Path, u.RawPath = u.Path[:i+1], ""
		shown = u.String() + "***"
	}
	if query != "" {
		shown += "?" + redactQuery(query)
	}
	return shown
}

// run starts the static pulls and serves until ctx ends; then it stops
// every relay and waits for them.
func (rs *relays) run(ctx context.Context) {
	rs.mu.Lock()
	rs.ctx = ctx
	for _, r := range rs.rules {
		if r.Mode == relayStatic {
			rs.startPull(r, streamKey{r.App, r.Name}, []string{r.URL}, false)
		}
	}
	rs.mu.Unlock()
	<-ctx.Done()
	rs.wg.Wait()
}

// ---- push ----

// tap is called by the hub at each publish: a push for each rule that
// matches the stream.
func (rs *relays) tap(h *hub, key streamKey) []*subscriber {
	rs.mu.Lock()
	rules := slices.Clone(rs.rules)
	rs.mu.Unlock()
	return rs.tapRules(h, key, rules)
}

// tapRules starts the pushes of key that rules ask for, on the hub
// goroutine.
func (rs *relays) tapRules(h *hub, key streamKey, rules []*relayRule) []*subscriber {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ctx == nil || rs.ctx.Err() != nil {
		return nil
	}
	var subs []*subscriber
	for _, rule := range rules {
		if rule.Mode != relayPush || !rule.matches(key) {
			continue
		}
		sub := h.newSubscriber(key, clientInfo{ID: "relay", Protocol: protoRTMP}, relayForm{}, nil)
		sub.patient = true
		target := rule.target(key)
		r := rs.add(relayPush, key, target, redactRelayURL(target, !rule.AppendName), rule)
		ctx, cancel := context.WithCancel(rs.ctx)
		r.stop = cancel
		rs.wg.Go(func() {
			defer cancel()
			rs.push(ctx, r, sub)
			rs.remove(r)
		})
		subs = append(subs, sub)
	}
	return subs
}

// relayForm is a push's part in the hub: it reads frames, not bytes, and
// ends with the publish.
type relayForm struct{}

func (relayForm) format() outputFormat             { return formatFLV }
func (relayForm) publishNotice(streamKey) *frame   { return nil }
func (relayForm) unpublishNotice(streamKey) *frame { return nil }

// add registers a relay; rs.mu is held.
func (rs *relays) add(mode relayMode, key streamKey, target, shown string, rule *relayRule) *relay {
	r := &relay{ID: newClientID(), Mode: mode, Key: key, url: target, shown: shown, Started: time.Now(),
		state: "connecting", rule: rule, masked: mode == relayPush && rule != nil && !rule.AppendName}
	rs.running[r.ID] = r
	return r
}

func (rs *relays) remove(r *relay) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	delete(rs.running, r.ID)
	if rs.pulls[r.Key] == r {
		delete(rs.pulls, r.Key)
	}
}

// push forwards one publish to r's target until the publish ends or ctx
// does: connect, wait for a keyframe (with the headers before it), send
// what comes, and on an error reconnect after a back-off.
func (rs *relays) push(ctx context.Context, r *relay, sub *subscriber) {
	log := rs.log.With("relay", r.ID, "mode", "push", "stream", r.Key.String(), "url", r.shown)
	defer rs.hub.untap(sub)
	wait := relayRetryFirst
	for first := true; ; first = false {
		// Until connected, what the hub queues is thrown away: a push
		// whose queue filled while its target was away would look like a
		// slow viewer, which the hub disconnects after maxBehind, ending
		// the push for good.
		stopDiscard := discardQueue(sub)
		if !first {
			r.setState("retrying", nil)
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				stopDiscard()
				r.setState("stopped", nil)
				return
			case <-sub.done:
				stopDiscard()
				r.setState("stopped", nil)
				return
			}
			wait = min(2*wait, relayRetryMax)
		}
		r.setState("connecting", nil)
		began := time.Now()
		c, err := dialRTMPClient(ctx, r.url, true, rtmpClientOptions{})
		if err == nil {
			err = c.publish()
		}
		stopDiscard()
		if err != nil {
			if c != nil {
				c.close()
			}
			if ctx.Err() != nil || sub.isDone() {
				r.setState("stopped", nil)
				return
			}
			r.errs.Add(1)
			r.setState("retrying", err)
			log.Warn("relay: cannot publish to target", "err", r.errText(err), "retry_in", wait)
			continue
		}
		log.Info("relay: publishing")
		rs.restartAtKeyframe(sub)
		r.setState("live", nil)
		err = rs.send(ctx, r, sub, c)
		sent := c.bytesOut.Load()
		c.close()
		if err == nil {
			log.Info("relay: stream ended", "bytes", sent)
			r.setState("stopped", nil)
			return
		}
		if ctx.Err() != nil {
			log.Info("relay: stopped", "bytes", sent)
			r.setState("stopped", nil)
			return
		}
		r.errs.Add(1)
		r.setState("retrying", err)
		if time.Since(began) > relayHealthy {
			wait = relayRetryFirst
		}
		log.Warn("relay: target lost", "err", r.errText(err), "bytes", sent, "retry_in", wait)
	}
}

// discardQueue throws away what the hub queues for sub until stop is
// called (or the subscription ends).
func discardQueue(sub *subscriber) (stop func()) {
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		var batch []*frame
		for {
			select {
			case <-sub.ready:
				batch = sub.drain(batch[:0])
				sub.dequeued(batch)
				clear(batch)
			case <-sub.done:
				return
			case <-quit:
				return
			}
		}
	})
	return func() { close(quit); wg.Wait() }
}

// restartAtKeyframe empties a push's queue and has the hub start it
// again at the next keyframe, with the metadata and sequence headers: a
// target that has just been (re)connected needs them first.
func (rs *relays) restartAtKeyframe(sub *subscriber) {
	rs.hub.call(func() {
		sub.waitKey, sub.started = true, false
		sub.dequeued(sub.drain(nil))
	})
}

// send writes what the hub queues for sub to c until the publish ends
// (nil) or a write fails.
func (rs *relays) send(ctx context.Context, r *relay, sub *subscriber, c *rtmpClientConn) error {
	var batch []*frame
	for {
		select {
		case <-sub.ready:
		case <-sub.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = sub.drain(batch[:0])
		sub.dequeued(batch)
		for _, f := range skipBehind(batch) {
			if f.typ == 0 {
				continue // the FLV file header: not a message
			}
			before := c.bytesOut.Load()
			if err := c.writeTag(flvTag{Type: f.typ, Time: f.time, Data: f.body()}); err != nil {
				return err
			}
			r.bytes.Add(c.bytesOut.Load() - before)
		}
		clear(batch)
		if len(batch) == 0 && sub.isDone() {
			if errors.Is(sub.err, errSubscriptionEnded) {
				return nil
			}
			return sub.err
		}
	}
}

// relayMaxLag is how much media one batch of a push may span: more means
// the target takes the stream slower than it comes.
const relayMaxLag = 3 * time.Second

// skipBehind drops a batch's frames before its last keyframe when the
// batch spans more than relayMaxLag, keeping metadata and sequence
// headers: a push to a slow target skips to the latest keyframe, as a
// viewer does. Otherwise each batch would take longer to send than the
// last, until the hub, finding no room in the push's queue for 10 s,
// disconnected it as a slow viewer and the push ended for good.
func skipBehind(batch []*frame) []*frame {
	media := func(f *frame) bool {
		if f.typ != msgAudio && f.typ != msgVideo || f.flv == nil {
			return false
		}
		if f.typ == msgAudio {
			return !audioIsHeader(f.body())
		}
		header, _ := videoInfo(f.body())
		return !header
	}
	first, last, key := -1, -1, -1
	for i, f := range batch {
		if !media(f) {
			continue
		}
		if first < 0 {
			first = i
		}
		last = i
		if f.key {
			key = i
		}
	}
	if first < 0 || key <= first ||
		time.Duration(int64(batch[last].time)-int64(batch[first].time))*time.Millisecond <= relayMaxLag {
		return batch
	}
	out := batch[:0:0]
	for i, f := range batch {
		if i >= key || !media(f) {
			out = append(out, f)
		}
	}
	return out
}

// ---- pull ----

// demand is called by the hub when a player asks for a stream that has
// no publisher: an edge pulls it from its origins, once. It tells whether
// a pull of key runs.
func (rs *relays) demand(key streamKey) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.ctx == nil || rs.ctx.Err() != nil {
		return false
	}
	if rs.pulls[key] != nil {
		return true
	}
	var urls []string
	for _, rule := range rs.rules {
		if rule.Mode == relayPull && rule.matches(key) {
			urls = append(urls, rule.target(key))
		}
	}
	for _, o := range rs.origins {
		urls = append(urls, o.target(key))
	}
	if len(urls) == 0 {
		return false
	}
	rs.startPull(nil, key, urls, true)
	return true
}

// startPull runs a pull of key from urls (tried in turn); onDemand pulls
// end when nobody watches. rs.mu is held.
func (rs *relays) startPull(rule *relayRule, key streamKey, urls []string, onDemand bool) *relay {
	mode := relayPull
	if !onDemand {
		mode = relayStatic
	}
	r := rs.add(mode, key, urls[0], redactRelayURL(urls[0], false), rule)
	rs.pulls[key] = r
	ctx, cancel := context.WithCancel(rs.ctx)
	r.stop = cancel
	rs.wg.Go(func() {
		defer cancel()
		rs.pull(ctx, r, urls, onDemand)
		rs.remove(r)
	})
	return r
}

// pull plays the remote stream and publishes it here, reconnecting with
// back-off, until ctx ends or (onDemand) nobody has watched for
// pullLinger.
func (rs *relays) pull(ctx context.Context, r *relay, urls []string, onDemand bool) {
	log := rs.log.With("relay", r.ID, "mode", string(r.Mode), "stream", r.Key.String())
	wait := relayRetryFirst
	idleSince := time.Time{}
	var pl pulled
	defer func() {
		if pl.p != nil {
			rs.hub.unpublish(pl.p)
		}
	}()
	for attempt := 0; ; attempt++ {
		u := urls[attempt%len(urls)]
		r.mu.Lock()
		r.url, r.shown = u, redactRelayURL(u, false)
		r.mu.Unlock()
		r.setState("connecting", nil)
		began := time.Now()
		dial := u
		if onDemand {
			dial = signedPull(u, rs.secret, time.Now())
		}
		err := rs.pullOnce(ctx, r, dial, log, &pl)
		if ctx.Err() != nil || errors.Is(err, errPullIdle) {
			if err != nil {
				log.Info("relay: pull stopped: no players")
			}
			r.setState("stopped", nil)
			return
		}
		if errors.Is(err, errStreamBusy) {
			log.Info("relay: stream published here: pull not needed")
			r.setState("stopped", err)
			return
		}
		if err != nil {
			r.errs.Add(1)
		}
		if time.Since(began) > relayHealthy {
			wait = relayRetryFirst
		}
		r.setState("retrying", err)
		if err != nil {
			log.Warn("relay: pull failed", "url", redactRelayURL(u, false), "err", r.errText(err), "retry_in", wait)
		} else {
			log.Info("relay: the remote stream ended", "url", redactRelayURL(u, false), "retry_in", wait)
		}
		if onDemand {
			if rs.hub.players(r.Key) == 0 {
				if idleSince.IsZero() {
					idleSince = time.Now()
				}
				if time.Since(idleSince) >= pullLinger || len(urls) == 1 && err != nil {
					r.setState("stopped", nil)
					return
				}
			} else {
				idleSince = time.Time{}
			}
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			r.setState("stopped", nil)
			return
		}
		wait = min(2*wait, relayRetryMax)
	}
}

// pulled is what a pull keeps from one session to the next: the local
// publish, so that its players stay through a restart of the origin (as
// nginx-rtmp's players do), and the timestamps, which go on rising from
// where the last session left off.
type pulled struct {
	p      *publisher
	conn   atomic.Pointer[rtmpClientConn] // the session's connection
	before atomic.Uint64                  // bytes received in the sessions before it
	last   uint32                         // the last timestamp published
	any    bool                           // something was published
}

func (pl *pulled) bytesIn() uint64 {
	n := pl.before.Load()
	if c := pl.conn.Load(); c != nil {
		n += c.bytesIn()
	}
	return n
}

// pullOnce is one session of a pull: play u, publish here what it sends.
func (rs *relays) pullOnce(ctx context.Context, r *relay, u string, log *slog.Logger, pl *pulled) error {
	c, err := dialRTMPClient(ctx, u, false, rtmpClientOptions{})
	if err != nil {
		return err
	}
	sessionCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopOnEnd := context.AfterFunc(sessionCtx, func() { c.nc.Close() })
	defer stopOnEnd()
	defer c.close()
	if err := c.play(); err != nil {
		return err
	}
	pl.conn.Store(c)
	defer func() {
		pl.before.Add(c.bytesIn())
		pl.conn.Store(nil)
	}()
	if pl.p == nil {
		pu, _ := parseRTMPURL(u)
		info := clientInfo{ID: r.ID, IP: pu.Host, Protocol: protoRTMP, Created: time.Now()}
		// A kick (the API, or a local publisher taking over the name of a
		// pull that has gone silent) ends the pull, not just this session.
		p, err := rs.hub.publish(r.Key, info, pl.bytesIn, r.stop)
		if err != nil {
			return err
		}
		pl.p = p
	}
	r.setState("live", nil)
	log.Info("relay: pulling", "url", redactRelayURL(u, false))
	var idle atomic.Bool
	if r.Mode == relayPull {
		go func() {
			if rs.waitIdle(sessionCtx, r.Key) {
				idle.Store(true)
				cancel()
			}
		}()
	}
	before := c.bytesIn()
	defer func() { r.bytes.Add(c.bytesIn() - before) }()
	var offset uint32
	first := true
	for {
		tag, err := c.next()
		if err != nil {
			if idle.Load() {
				return errPullIdle
			}
			if sessionCtx.Err() != nil && ctx.Err() == nil {
				return nil // kicked
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if first && pl.any {
			offset = pl.last + 1 - tag.Time // a new session's time starts after the last one's
		}
		first = false
		ts := tag.Time + offset
		pl.last, pl.any = ts, true
		if err := pl.p.ingest(tag.Type, ts, tag.Data); err != nil {
			return err
		}
	}
}

// signedPull is an on-demand pull's URL signed with this server's
// -auth-secret (NMS's scheme, see checkSign; valid for an hour): an edge
// and an origin that share the secret, as NMS set-ups copy one config,
// need no player's sign for the pull, and a player's sign never travels
// upstream. Without a secret, or when the URL has a query of its own, it
// is u.
func signedPull(u, secret string, now time.Time) string {
	if secret == "" || strings.Contains(u, "?") {
		return u
	}
	pu, err := parseRTMPURL(u)
	if err != nil {
		return u
	}
	exp := strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	sum := md5.Sum([]byte("/" + pu.App + "/" + pu.Name + "-" + exp + "-" + secret))
	return u + "?sign=" + exp + "-" + hex.EncodeToString(sum[:])
}

// errPullIdle ends an on-demand pull that nobody watches.
var errPullIdle = errors.New("no players")

// waitIdle returns true once key has had no players for pullLinger, false
// if ctx ends first.
func (rs *relays) waitIdle(ctx context.Context, key streamKey) bool {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var idle time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case now := <-tick.C:
			if rs.hub.players(key) > 0 {
				idle = time.Time{}
				continue
			}
			if idle.IsZero() {
				idle = now
			} else if now.Sub(idle) >= pullLinger {
				return true
			}
		}
	}
}

// ---- API ----

// relayInfo is a relay in NMS's /api/relay shape, plus state, bytes and
// errors.
type relayInfo struct {
	App       string    `json:"app"`
	Name      string    `json:"name"`
	Path      string    `json:"path"`
	URL       string    `json:"url"`
	Mode      relayMode `json:"mode"`
	TS        int64     `json:"ts"` // start, ms since the epoch
	ID        string    `json:"id"`
	State     string    `json:"state"`
	Bytes     uint64    `json:"bytes"`
	Errors    uint64    `json:"errors"`
	LastError string    `json:"lastError,omitempty"`
}

func (rs *relays) list() []relayInfo {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	out := make([]relayInfo, 0, len(rs.running))
	for _, r := range rs.running {
		r.mu.Lock()
		out = append(out, relayInfo{App: r.Key.App, Name: r.Key.Name, Path: r.Key.String(), URL: r.shown,
			Mode: r.Mode, TS: r.Started.UnixMilli(), ID: r.ID, State: r.state, Bytes: r.bytes.Load(),
			Errors: r.errs.Load(), LastError: r.lastErr})
		r.mu.Unlock()
	}
	return out
}

// redactErr keeps a relay's URL and its secrets out of an error text:
// the URL as redactRelayURL shows it, and its user, password, query and
// (masked) stream key wherever else they appear, for servers quote them
// in their refusals ("stream /ingest/KEY is already publishing").
func redactErr(msg, raw string, masked bool) string {
	if raw == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, raw, redactRelayURL(raw, masked))
	u, err := url.Parse(raw)
	if err != nil {
		return msg
	}
	var secrets []string
	if u.User != nil {
		secrets = append(secrets, u.User.Username())
		if pass, ok := u.User.Password(); ok {
			secrets = append(secrets, pass)
		}
	}
	if u.RawQuery != "" {
		secrets = append(secrets, u.RawQuery)
		for _, values := range u.Query() {
			secrets = append(secrets, values...)
		}
	}
	if i := strings.LastIndexByte(u.Path, '/'); masked && i >= 0 {
		secrets = append(secrets, u.Path[i+1:])
	}
	// Longest first, so that a query goes whole before its values; very
	// short ones are left, as hiding them would garble the text.
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) })
	for _, s := range secrets {
		if len(s) >= 3 {
			msg = strings.ReplaceAll(msg, s, "***")
		}
	}
	return msg
}

// addAPI starts a relay asked for by POST /api/relay/pull or /push: a
// pull of url into app/name, or a push of app/name to url (now if it is
// live, and at each publish until deleted). It returns the id that
// DELETE /api/relay/ID takes.
func (rs *relays) addAPI(mode relayMode, app, name, u string) (string, error) {
	if !validName(app) || !validName(name) {
		return "", fmt.Errorf("app and name must be valid names (letters, digits, _ and -)")
	}
	if _, err := parseRTMPURL(u); err != nil {
		return "", err
	}
	key := streamKey{app, name}
	rule := &relayRule{ID: newClientID(), Mode: mode, App: app, Name: name, URL: u}
	rs.mu.Lock()
	if rs.ctx == nil || rs.ctx.Err() != nil {
		rs.mu.Unlock()
		return "", errors.New("relays are not running")
	}
	if mode == relayPull {
		defer rs.mu.Unlock()
		if old := rs.pulls[key]; old != nil {
			return "", fmt.Errorf("%s is pulled already (relay %s)", key, old.ID)
		}
		rule.Mode = relayStatic
		rs.rules = append(rs.rules, rule)
		rs.startPull(rule, key, []string{u}, false)
		return rule.ID, nil
	}
	rs.rules = append(rs.rules, rule)
	rs.mu.Unlock()
	// Not under rs.mu: the hub goroutine takes it in tapRules.
	rs.hub.call(func() {
		if s := rs.hub.streams[key]; s != nil && s.pub != nil {
			rs.hub.addTaps(s, rs.tapRules(rs.hub, key, []*relayRule{rule}))
		}
	})
	return rule.ID, nil
}

// deleteAPI stops a relay by its id, or an API relay by its rule's id
// (with the pushes it is running); false when there is none.
func (rs *relays) deleteAPI(id string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	found := false
	rs.rules = slices.DeleteFunc(rs.rules, func(r *relayRule) bool {
		if r.ID == id && r.ID != "" {
			found = true
			return true
		}
		return false
	})
	for _, r := range rs.running {
		if r.ID == id || r.rule != nil && r.rule.ID == id {
			found = true
			r.stop()
			// Gone from the API now, not when its goroutine has wound
			// down: a second DELETE finds nothing.
			delete(rs.running, r.ID)
		}
	}
	return found
}
