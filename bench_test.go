package main

// Benchmarks of the fan-out path, each against a reference measured in the
// same run, so that the ratio means something on a busy machine:
//
//	go test -run XXX -bench . -benchtime 1s .
//
// BenchmarkFanout{RTMP,HTTPFLV}: a real server on loopback, one publisher
// (hub.publish + publisher.write in the benchmark's goroutine: no RTMP
// client cost, but the encode is included), N viewers on real TCP sockets
// that read and discard. The reference is the least a fan-out can do: the
// same encoded bytes pushed to N channels, one goroutine per socket
// draining its channel and writing what piled up with one writev, with the
// same write delay, to N loopback socket pairs with the same readers. Both
// are driven with the same flow control (the publisher stays at most
// fanWindow messages ahead of the slowest viewer, so nothing is dropped)
// and run alternately (reference, gms, reference, gms) to spread the noise.
// Viewers join before the publisher; a warm-up second and a quiet spell
// come before the counted part, so the join is not measured. An op is one
// published message; the custom metrics are per message:
//
//	ns/msg/viewer, ref-ns/msg/viewer, ratio  wall time, gms and reference
//	cpu-ns/msg/viewer, cpu-ratio             process CPU (server and readers)
//	MB/s                                     bytes all gms viewers received
//	allocs/msg, ref-allocs/msg               mallocs in the process
//
// With a write delay the wall numbers are bounded by the delay (a viewer
// gets at most fanWindow messages per delay), for gms and the reference
// alike; compare CPU there. With 1 viewer gms pays the encode (about 5 µs a
// message, see BenchmarkEncodeFrame) that the reference does not.

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fanMsg is one publisher message of the synthetic stream.
type fanMsg struct {
	typ     uint8
	ts      uint32 // ms within the second
	payload []byte
}

// The synthetic stream: 30 fps H.264-shaped video (a 60 KB keyframe, then
// 29 frames of 8 KB) and 43 AAC-shaped audio frames of 300 B per second,
// about 2.4 Mbit/s, 73 messages a second.
const (
	fanKeyBytes   = 60 << 10
	fanInterBytes = 8 << 10
	fanAudioBytes = 300
)

func fanFill(b []byte, seed byte) []byte {
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

// fanHeaders are what an encoder sends first: metadata and the two
// sequence headers.
func fanHeaders() []fanMsg {
	meta := amf0AppendAll(nil, "@setDataFrame", "onMetaData", amfECMAArray{
		{"width", 1280.0}, {"height", 720.0}, {"framerate", 30.0},
		{"videocodecid", 7.0}, {"audiocodecid", 10.0}, {"audiosamplerate", 44100.0}})
	return []fanMsg{
		{msgDataAMF0, 0, meta},
		{msgAudio, 0, []byte{0xAF, 0x00, 0x12, 0x10}},
		{msgVideo, 0, []byte{0x17, 0x00, 0, 0, 0, 1, 0x64, 0x00, 0x1F, 0xFF, 0xE1, 0, 0}},
	}
}

// fanSecond is one second of media, in timestamp order, starting with a
// keyframe.
func fanSecond() []fanMsg {
	var msgs []fanMsg
	v, a := 0, 0
	for v < 30 || a < 43 {
		vt, at := uint32(v*1000/30), uint32(a*1024*1000/44100)
		if v < 30 && (a >= 43 || vt <= at) {
			var p []byte
			if v == 0 {
				p = fanFill(make([]byte, fanKeyBytes), 1)
				p[0] = 0x17
			} else {
				p = fanFill(make([]byte, fanInterBytes), byte(v))
				p[0] = 0x27
			}
			p[1], p[2], p[3], p[4] = 1, 0, 0, 0 // AVC NALU, composition time 0
			msgs = append(msgs, fanMsg{msgVideo, vt, p})
			v++
		} else {
			p := fanFill(make([]byte, fanAudioBytes), byte(a))
			p[0], p[1] = 0xAF, 0x01 // AAC raw
			msgs = append(msgs, fanMsg{msgAudio, at, p})
			a++
		}
	}
	return msgs
}

// fanCounter is one reader's byte count, on its own cache line; base is
// what it had read when the measured part began.
type fanCounter struct {
	n    atomic.Int64
	base int64
	_    [48]byte
}

// fanReaders read and discard from N sockets, counting bytes.
type fanReaders struct {
	conns []net.Conn
	recv  []fanCounter
	dead  atomic.Int32 // readers that ended before close
	stop  atomic.Bool
	wg    sync.WaitGroup
}

func startFanReaders(tb testing.TB, conns []net.Conn) *fanReaders {
	r := &fanReaders{conns: conns, recv: make([]fanCounter, len(conns))}
	for i, nc := range conns {
		r.wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := nc.Read(buf)
				r.recv[i].n.Add(int64(n))
				if err != nil {
					if !r.stop.Load() {
						r.dead.Add(1)
					}
					return
				}
			}
		})
	}
	tb.Cleanup(func() {
		r.stop.Store(true)
		for _, nc := range conns {
			nc.Close()
		}
		r.wg.Wait()
	})
	return r
}

// min is the least any reader has read since its base.
func (r *fanReaders) min() int64 {
	m := int64(1 << 62)
	for i := range r.recv {
		m = min(m, r.recv[i].n.Load()-r.recv[i].base)
	}
	return m
}

// settle waits until every reader has read something and nothing has
// moved for quiet, then makes what each has read its base. What a viewer
// gets before the measured part (the join, the headers, a warm-up) is the
// server's business; the benchmark counts exactly from there.
func (r *fanReaders) settle(tb testing.TB, quiet time.Duration) {
	last, since := int64(-1), time.Now()
	for {
		if n := r.dead.Load(); n > 0 {
			tb.Fatalf("%d readers lost their connection", n)
		}
		t := r.total()
		if t != last {
			last, since = t, time.Now()
		} else if time.Since(since) >= quiet && r.min() > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	for i := range r.recv {
		r.recv[i].base = r.recv[i].n.Load()
	}
}

func (r *fanReaders) total() int64 {
	var t int64
	for i := range r.recv {
		t += r.recv[i].n.Load()
	}
	return t
}

// fanWindow is how many messages the publisher may be ahead of the slowest
// viewer: well inside a viewer's queue (1024 messages), so nothing drops.
const fanWindow = 256

// fanFlow keeps a publisher at most fanWindow messages ahead of its
// slowest reader. Every reader must receive exactly the bytes counted.
type fanFlow struct {
	r     *fanReaders
	sent  int
	want  int64 // bytes each reader has once everything sent has arrived
	ring  [fanWindow]int64
	seen  int64 // the last minimum observed
	check func() error
}

func (f *fanFlow) waitMin(tb testing.TB, target int64) {
	moved := time.Now()
	for f.seen < target {
		m := f.r.min()
		if m != f.seen {
			moved = time.Now()
		}
		if f.seen = m; f.seen >= target {
			return
		}
		if time.Since(moved) > 20*time.Second {
			// Not a time limit on the server: nothing moved at all, so
			// the byte accounting is wrong and waiting longer is useless.
			tb.Fatalf("gave up: the slowest reader has %d bytes, %d expected, and nothing arrived for 20 s", m, target)
		}
		if n := f.r.dead.Load(); n > 0 {
			tb.Fatalf("%d readers lost their connection", n)
		}
		if f.check != nil {
			if err := f.check(); err != nil {
				tb.Fatal(err)
			}
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// before waits until message f.sent may go out.
func (f *fanFlow) before(tb testing.TB) {
	if f.sent >= fanWindow {
		f.waitMin(tb, f.ring[f.sent%fanWindow])
	}
}

// after counts a message of n bytes per reader as sent.
func (f *fanFlow) after(n int64) {
	f.want += n
	f.ring[f.sent%fanWindow] = f.want
	f.sent++
}

// fanPhase is what one timed phase cost.
type fanPhase struct {
	wall, cpu time.Duration
	mallocs   uint64
	msgs      int
}

func (p *fanPhase) add(q fanPhase) {
	p.wall += q.wall
	p.cpu += q.cpu
	p.mallocs += q.mallocs
	p.msgs += q.msgs
}

// measure runs fn, which sends msgs messages and waits until they have
// arrived, and returns its wall time, process CPU time and allocations.
func measure(msgs int, fn func()) fanPhase {
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	c0, t0 := processCPU(), time.Now()
	fn()
	wall, cpu := time.Since(t0), processCPU()-c0
	runtime.ReadMemStats(&m1)
	return fanPhase{wall: wall, cpu: cpu, mallocs: m1.Mallocs - m0.Mallocs, msgs: msgs}
}

// fanRef is the reference fan-out: a channel and a writer goroutine per
// socket, the same batching as subscriber.run, nothing else.
type fanRef struct {
	qs []chan []byte
	wg sync.WaitGroup
}

func startFanRef(tb testing.TB, n int, delay time.Duration) (*fanRef, *fanReaders) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	ref := &fanRef{}
	var clients, servers []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			tb.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			tb.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	readers := startFanReaders(tb, clients)
	for _, s := range servers {
		q := make(chan []byte, subQueueFrames)
		ref.qs = append(ref.qs, q)
		ref.wg.Go(func() { fanRefWriter(s, q, delay) })
	}
	tb.Cleanup(func() {
		for _, q := range ref.qs {
			close(q)
		}
		ref.wg.Wait()
		for _, s := range servers {
			s.Close()
		}
	})
	return ref, readers
}

func fanRefWriter(nc net.Conn, q chan []byte, delay time.Duration) {
	all := make(net.Buffers, 0, 64)
	var bufs net.Buffers // WriteTo takes its address: one variable, not one per write
	batch := make([][]byte, 0, 64)
	var last time.Time
	var timer *time.Timer
	for {
		p, ok := <-q
		if !ok {
			return
		}
		batch = append(batch, p)
		if wait := time.Until(last.Add(delay)); delay > 0 && wait > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			<-timer.C
		}
	drain:
		for len(batch) < subQueueFrames {
			select {
			case p, ok := <-q:
				if !ok {
					break drain
				}
				batch = append(batch, p)
			default:
				break drain
			}
		}
		bufs = append(all[:0], batch...)
		all = bufs
		if _, err := bufs.WriteTo(nc); err != nil {
			return
		}
		clear(all)
		if delay > 0 {
			last = time.Now()
		}
		clear(batch)
		batch = batch[:0]
	}
}

// fanViewers opens n viewers of app "live" stream name on ts, waiting for
// a publisher, and returns their raw connections with nothing buffered.
// proto is protoRTMP, protoHTTP or protoWS. Only the sockets stay in this
// process's heap (BenchmarkViewerHeap counts the rest as the server's).
func fanViewers(tb testing.TB, ts *testServer, proto protocol, n int, name string) []net.Conn {
	var conns []net.Conn
	for range n {
		if proto != protoRTMP {
			nc, err := net.Dial("tcp", ts.httpAddr)
			if err != nil {
				tb.Fatal(err)
			}
			tb.Cleanup(func() { nc.Close() })
			status := "HTTP/1.1 200 "
			if proto == protoWS {
				// RFC 6455 §4.1; the key's accept is checked by the WS tests.
				status = "HTTP/1.1 101 "
				fmt.Fprintf(nc, "GET /live/%s.flv HTTP/1.1\r\nHost: gms\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
					"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", name)
			} else {
				fmt.Fprintf(nc, "GET /live/%s.flv HTTP/1.1\r\nHost: gms\r\n\r\n", name)
			}
			if err := fanReadHTTPHeader(nc, status); err != nil {
				tb.Fatal(err)
			}
			conns = append(conns, nc)
			continue
		}
		c := dialRTMPOwned(tb, ts.rtmpAddr, false)
		nc := c.nc // the cleanup holds the socket, not the client and its buffers
		tb.Cleanup(func() { nc.Close() })
		c.nc.SetDeadline(time.Time{})
		c.connect("live")
		sid := c.createStream()
		c.command(sid, "play", nil, name)
		for _, want := range []string{"NetStream.Play.Reset", "NetStream.Play.Start"} {
			if got := c.expectStatus(); got != want {
				tb.Fatalf("play: %s; want %s", got, want)
			}
		}
		if n := c.cr.r.Buffered(); n != 0 {
			tb.Fatalf("%d bytes after Play.Start before any publisher", n)
		}
		conns = append(conns, c.nc)
	}
	waitFor(tb, "the viewers", func() bool { return ts.viewers(streamKey{"live", name}) == n })
	return conns
}

// fanReadHTTPHeader reads a response header, and nothing after it (the
// server sends nothing more before a publisher arrives), without keeping
// a buffer; the status line must begin with status.
func fanReadHTTPHeader(nc net.Conn, status string) error {
	var buf [1024]byte
	n := 0
	for !bytes.HasSuffix(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			return fmt.Errorf("response header too long")
		}
		k, err := nc.Read(buf[n:])
		if err != nil {
			return err
		}
		n += k
	}
	if !bytes.HasPrefix(buf[:n], []byte(status)) {
		return fmt.Errorf("response: %q", buf[:n])
	}
	return nil
}

func BenchmarkFanoutRTMP(b *testing.B)    { benchFanout(b, formatRTMP) }
func BenchmarkFanoutHTTPFLV(b *testing.B) { benchFanout(b, formatFLV) }

func benchFanout(b *testing.B, form outputFormat) {
	for _, n := range []int{1, 100, 1000} {
		for _, d := range []time.Duration{0, 50 * time.Millisecond} {
			name := "0"
			if d > 0 {
				name = d.String()
			}
			b.Run(fmt.Sprintf("viewers=%d/delay=%s", n, name), func(b *testing.B) { runFanout(b, form, n, d) })
		}
	}
}

func runFanout(b *testing.B, form outputFormat, n int, delay time.Duration) {
	b.StopTimer()
	ts := startServer(b, func(c *config) {
		c.WriteDelay = delay
		c.QueueBytes = 256 << 20 // the flow control bounds the queue; bytes must never be the limit
		c.Ping = 0
		c.PingTimeout = time.Hour // viewers that only read are never idle-timed-out mid-run
		c.LogLevel = slog.LevelWarn
	})
	key := streamKey{"live", "bench"}

	// What each viewer receives per message, in its form.
	headers, second := fanHeaders(), fanSecond()
	var enc publishState
	encoded := func(m fanMsg) []byte {
		f, _ := enc.encode(m.typ, m.ts, m.payload, ts.cfg.ChunkSize)
		return f.wireBytes(form)
	}
	for _, m := range headers {
		encoded(m) // the same encoder state as the publisher's
	}
	var wire [][]byte
	for _, m := range second {
		wire = append(wire, encoded(m))
	}

	ref, refReaders := startFanRef(b, n, delay)
	refFlow := &fanFlow{r: refReaders}
	proto := protoRTMP
	if form == formatFLV {
		proto = protoHTTP
	}
	conns := fanViewers(b, ts, proto, n, key.Name)
	gmsReaders := startFanReaders(b, conns)
	drops0 := ts.hub.counters.drops.Load()
	gmsFlow := &fanFlow{r: gmsReaders, check: func() error {
		if d := ts.hub.counters.drops.Load() - drops0; d > 0 {
			return fmt.Errorf("%d frames dropped: the flow control let a queue fill", d)
		}
		return nil
	}}

	pub, err := ts.hub.publish(key, clientInfo{ID: "BENCHPUB", IP: "127.0.0.1", Protocol: protoRTMP, Created: time.Now()},
		func() uint64 { return 0 }, func() {})
	if err != nil {
		b.Fatal(err)
	}
	// Warm-up, not counted: headers and one second of media (fewer
	// messages than a queue holds), then the per-viewer bases.
	for _, m := range headers {
		if err := pub.ingest(m.typ, m.ts, m.payload); err != nil {
			b.Fatal(err)
		}
	}
	for _, m := range second {
		if err := pub.ingest(m.typ, m.ts, m.payload); err != nil {
			b.Fatal(err)
		}
	}
	gmsReaders.settle(b, 200*time.Millisecond+2*delay)
	if err := gmsFlow.check(); err != nil {
		b.Fatal(err)
	}

	gmsNext, refNext := len(second), 0
	gmsRun := func(msgs int) {
		for range msgs {
			i := gmsNext % len(second)
			m := second[i]
			gmsFlow.before(b)
			if err := pub.ingest(m.typ, uint32(gmsNext/len(second))*1000+m.ts, m.payload); err != nil {
				b.Fatal(err)
			}
			gmsFlow.after(int64(len(wire[i])))
			gmsNext++
		}
		gmsFlow.waitMin(b, gmsFlow.want)
	}
	refRun := func(msgs int) {
		for range msgs {
			p := wire[refNext%len(wire)]
			refFlow.before(b)
			for _, q := range ref.qs {
				q <- p
			}
			refFlow.after(int64(len(p)))
			refNext++
		}
		refFlow.waitMin(b, refFlow.want)
	}

	var gms, refp fanPhase
	rounds := min(2, b.N)
	runtime.GC()
	b.ResetTimer()
	b.StopTimer()
	gmsBytes0 := gmsReaders.total()
	for r := range rounds {
		msgs := b.N / rounds
		if r == rounds-1 {
			msgs = b.N - msgs*(rounds-1)
		}
		refp.add(measure(msgs, func() { refRun(msgs) }))
		b.StartTimer()
		gms.add(measure(msgs, func() { gmsRun(msgs) }))
		b.StopTimer()
	}
	gmsBytes := gmsReaders.total() - gmsBytes0

	per := func(d time.Duration, p fanPhase) float64 { return float64(d.Nanoseconds()) / float64(p.msgs*n) }
	b.ReportMetric(per(gms.wall, gms), "ns/msg/viewer")
	b.ReportMetric(per(refp.wall, refp), "ref-ns/msg/viewer")
	b.ReportMetric(gms.wall.Seconds()/refp.wall.Seconds(), "ratio")
	b.ReportMetric(per(gms.cpu, gms), "cpu-ns/msg/viewer")
	b.ReportMetric(gms.cpu.Seconds()/refp.cpu.Seconds(), "cpu-ratio")
	b.ReportMetric(float64(gmsBytes)/1e6/gms.wall.Seconds(), "MB/s")
	b.ReportMetric(float64(gms.mallocs)/float64(gms.msgs), "allocs/msg")
	b.ReportMetric(float64(refp.mallocs)/float64(refp.msgs), "ref-allocs/msg")
}

// BenchmarkIngest is a publisher's path from the socket to the hub: the
// synthetic second, chunked at 4096 bytes as ffmpeg and OBS publish (after
// a Set Chunk Size), read by the server's chunk reader over a 16 KiB
// bufio.Reader, as rtmpConn does, and each message made a frame
// (publishState.encodeIn: audio and video stay in the array they were
// read into). The reference reads the same bytes with io.ReadFull, a
// message's wire length at a time, each into a new array of its FLV tag's
// size: the copy and the array any server that keeps the message makes.
// One op is one message.
func BenchmarkIngest(b *testing.B) {
	const chunkSize = 4096
	second := fanSecond()
	var stream []byte
	var wireLens []int
	for _, m := range second {
		before := len(stream)
		stream = appendChunks(stream, csidVideo, m.typ, 1, m.ts, m.payload, chunkSize)
		wireLens = append(wireLens, len(stream)-before)
	}
	setChunk := appendUint32Control(nil, msgSetChunkSize, chunkSize)
	b.SetBytes(int64(len(stream) / len(second)))

	// Reference, untimed by the framework, measured here.
	br := bufio.NewReaderSize(&fanRepeat{data: stream}, 16<<10)
	t0 := time.Now()
	for i := range b.N {
		n := wireLens[i%len(wireLens)]
		tag := make([]byte, n+15)
		if _, err := io.ReadFull(br, tag[11:11+n]); err != nil {
			b.Fatal(err)
		}
		fanSink = &frame{flv: tag}
	}
	ref := time.Since(t0)

	cr := newChunkReader(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(setChunk), &fanRepeat{data: stream}), 16<<10))
	if msg, err := cr.readMessage(); err != nil || msg.Type != msgSetChunkSize {
		b.Fatalf("Set Chunk Size: %v %v", msg.Type, err)
	}
	var ps publishState
	b.ReportAllocs()
	b.ResetTimer()
	t0 = time.Now()
	for i := range b.N {
		msg, err := cr.readMessage()
		if err != nil {
			b.Fatal(err)
		}
		if m := second[i%len(second)]; msg.Type != m.typ || len(msg.Payload) != len(m.payload) || msg.Tag == nil {
			b.Fatalf("message %d: type %d len %d; want type %d len %d, in its own array", i, msg.Type, len(msg.Payload), m.typ, len(m.payload))
		}
		fanSink, _ = ps.encodeIn(msg.Type, msg.Time, msg.Payload, msg.Tag, 60000)
	}
	gms := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(gms.Seconds()/ref.Seconds(), "ratio")
}

// fanRepeat reads data over and over.
type fanRepeat struct {
	data []byte
	off  int
}

func (r *fanRepeat) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

var fanSink *frame

// BenchmarkEncodeFrame encodes each message (publishState.encode, chunk
// size 60000) as it does those that do not come in an array of their own
// (metadata, pulled streams): one copy of the payload, in its FLV tag,
// with the RTMP chunk headers beside it. The reference makes a buffer of the tag's size
// and copies the payload into it: the least a copy of the payload can
// cost. One op is one message.
func BenchmarkEncodeFrame(b *testing.B) {
	second := fanSecond()
	var total int
	for _, m := range second {
		total += len(m.payload)
	}
	b.SetBytes(int64(total / len(second)))
	t0 := time.Now()
	for i := range b.N {
		m := second[i%len(second)]
		f := make([]byte, len(m.payload)+15)
		copy(f[11:], m.payload)
		fanSink = &frame{flv: f}
	}
	ref := time.Since(t0)
	var ps publishState
	b.ReportAllocs()
	b.ResetTimer()
	t0 = time.Now()
	for i := range b.N {
		m := second[i%len(second)]
		fanSink, _ = ps.encode(m.typ, uint32(i/len(second))*1000+m.ts, m.payload, 60000)
	}
	gms := time.Since(t0)
	b.StopTimer()
	b.ReportMetric(gms.Seconds()/ref.Seconds(), "ratio")
}

// BenchmarkViewerHeap is the memory a connected viewer costs, for each
// player protocol, idle (waiting for a publisher) and streaming (a second
// of the synthetic stream delivered, the GOP cache full, readers
// settled): heap in use after GC and goroutine stacks, per viewer, with
// 1000 viewers. The reference is 1000 bare loopback socket pairs, both
// ends in this process as with the viewers, and for streaming the same
// readers on them; net-B/viewer and net-stack-B/viewer are what gms holds
// beyond that. Streaming includes the GOP cache shared by all, about 0.3
// KB a viewer in one form. The ops do nothing: the metrics are the result.
// With GMS_HEAP_PROFILE=FILE (and -memprofilerate 512) each case writes
// a heap profile, FILE.CASE, while its viewers are connected.
func BenchmarkViewerHeap(b *testing.B) {
	for _, proto := range []protocol{protoRTMP, protoHTTP, protoWS} {
		for _, streaming := range []bool{false, true} {
			state := "idle"
			if streaming {
				state = "streaming"
			}
			b.Run(proto.String()+"/"+state, func(b *testing.B) { viewerHeap(b, proto, streaming) })
		}
	}
}

func heapNow() (heapInuse, stack int64) {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse), int64(ms.StackInuse)
}

func viewerHeap(b *testing.B, proto protocol, streaming bool) {
	const n = 1000
	// Reference: bare socket pairs, read like the viewers when streaming.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	h0, s0 := heapNow()
	var clients, servers []net.Conn
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		clients, servers = append(clients, c), append(servers, s)
	}
	var refReaders *fanReaders
	if streaming {
		refReaders = startFanReaders(b, clients)
	}
	h1, s1 := heapNow()
	ln.Close()
	if refReaders != nil {
		refReaders.stop.Store(true)
	}
	for _, c := range append(clients, servers...) {
		c.Close()
	}
	if refReaders != nil {
		refReaders.wg.Wait()
	}
	clients, servers = nil, nil
	refHeap, refStack := float64(h1-h0)/n, float64(s1-s0)/n

	ts := startServer(b, func(c *config) {
		c.LogLevel = slog.LevelWarn
		c.PingTimeout = time.Hour // viewers that only read are never idle-timed-out mid-run
	})
	key := streamKey{"live", "heap"}
	h0, s0 = heapNow()
	conns := fanViewers(b, ts, proto, n, key.Name)
	if streaming {
		readers := startFanReaders(b, conns)
		pub, err := ts.hub.publish(key, clientInfo{ID: "HEAPPUB", IP: "127.0.0.1", Protocol: protoRTMP, Created: time.Now()},
			func() uint64 { return 0 }, func() {})
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range append(fanHeaders(), fanSecond()...) {
			if err := pub.ingest(m.typ, m.ts, m.payload); err != nil {
				b.Fatal(err)
			}
		}
		readers.settle(b, 200*time.Millisecond+2*ts.cfg.WriteDelay)
		if d := ts.hub.counters.drops.Load(); d > 0 {
			b.Fatalf("%d frames dropped", d)
		}
	}
	h1, s1 = heapNow()
	if path := os.Getenv("GMS_HEAP_PROFILE"); path != "" {
		// What the viewers hold, while connected: go test -memprofilerate 512 ...
		f, err := os.Create(path + "." + proto.String() + map[bool]string{false: ".idle", true: ".streaming"}[streaming])
		if err != nil {
			b.Fatal(err)
		}
		pprof.Lookup("heap").WriteTo(f, 0)
		f.Close()
	}
	heap, stack := float64(h1-h0)/n, float64(s1-s0)/n
	for range b.N {
	}
	b.ReportMetric(heap, "heap-B/viewer")
	b.ReportMetric(stack, "stack-B/viewer")
	b.ReportMetric(heap-refHeap, "net-B/viewer")
	b.ReportMetric(stack-refStack, "net-stack-B/viewer")
	b.ReportMetric(refHeap, "ref-heap-B/conn")
}
