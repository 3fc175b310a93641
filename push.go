package main

// `gms push [flags] FILE URL`: read a media file and publish it to an RTMP
// server in real time, as `ffmpeg -re -i FILE -c copy -f flv URL` does;
// with loops, reconnection and a progress line. Also what push and pull
// share: opening a media file by its content, and the progress line.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

const (
	reconnectFirstDelay = 500 * time.Millisecond
	reconnectMaxDelay   = 10 * time.Second
	// A timestamp this far ahead of the pacing clock is a jump in the file
	// (a spliced recording), not a reason to sleep: the clock starts over.
	maxPacingJump = 10 * time.Second
)

// ---- opening media files ----

// openMedia opens a file for push and picks its reader by content (the
// first bytes), then by extension. The closer closes the file.
func openMedia(path string) (tagSource, io.Closer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && err != io.ErrUnexpectedEOF && err != io.EOF {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	var src tagSource
	switch kind := mediaKind(head[:n], path); kind {
	case "flv":
		src, err = newFLVFileSource(f, filepath.Base(path))
	case "mp4":
		src, err = openMP4(f)
	case "ts":
		src, err = openTS(f)
	default:
		err = fmt.Errorf("%s: not an FLV, MP4 or MPEG-TS file", path)
	}
	if kind := mediaKind(head[:n], path); err != nil && kind != "flv" && kind != "" {
		err = fmt.Errorf("%s: %w", filepath.Base(path), err) // the FLV reader names the file itself
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if _, named := src.(*flvFileSource); !named {
		src = &metadataSource{src: namedSource{src, filepath.Base(path)}}
	}
	return src, f, nil
}

// metadataSource puts an onMetaData first, as ffmpeg does when it streams
// an MP4 or MPEG-TS file, which carry none: players, the servers between
// and their APIs read the stream's size and codecs from it before a
// keyframe comes. Its values come from the first sequence headers.
type metadataSource struct {
	src   tagSource
	ahead []flvTag // read to find the headers, not yet given out
	err   error    // what ended the read ahead, given out after it
	begun bool
}

// metadataLookahead bounds the tags read to find both headers: MP4 and
// TS readers give each track's header before its first frame.
const metadataLookahead = 16

func (m *metadataSource) next() (flvTag, error) {
	if !m.begun {
		m.begun = true
		var video, audio []byte
		for len(m.ahead) < metadataLookahead && (video == nil || audio == nil) {
			tag, err := m.src.next()
			if err != nil {
				m.err = err
				break
			}
			tag.Data = bytes.Clone(tag.Data) // the readers reuse their buffers
			m.ahead = append(m.ahead, tag)
			switch header, _ := videoInfo(tag.Data); {
			case tag.Type == tagVideo && header:
				video = tag.Data
			case tag.Type == tagAudio && audioIsHeader(tag.Data):
				audio = tag.Data
			}
		}
		if video != nil || audio != nil {
			return flvTag{Type: tagScript, Data: streamMetadata(video, audio)}, nil
		}
	}
	if len(m.ahead) > 0 {
		tag := m.ahead[0]
		m.ahead = m.ahead[1:]
		return tag, nil
	}
	if m.err != nil {
		return flvTag{}, m.err
	}
	return m.src.next()
}

// streamMetadata is a live stream's onMetaData (duration 0, as ffmpeg
// writes it when streaming) from its video and audio sequence headers
// (either may be nil). Codec ids are the FLV ones (§E.4.3.1, §E.4.2.1),
// or the FourCC as a number for Enhanced RTMP codecs, as ffmpeg 6.1 and
// later write them.
func streamMetadata(video, audio []byte) []byte {
	meta := amfECMAArray{{"duration", 0.0}}
	if len(video) >= 5 { // the shortest: ExHeader and FourCC, or codec byte, packet type and time
		v := parseVideoHeader(video)
		id := float64(video[0] & 0x0F)
		if video[0]&0x80 != 0 { // Enhanced RTMP ExHeader: the FourCC follows
			id = float64(binary.BigEndian.Uint32(video[1:5]))
		}
		if v.Width > 0 && v.Height > 0 {
			meta = append(meta, amfProp{"width", float64(v.Width)}, amfProp{"height", float64(v.Height)})
		}
		meta = append(meta, amfProp{"videocodecid", id})
	}
	if len(audio) >= 2 {
		a := parseAudioHeader(audio)
		id := float64(audio[0] >> 4)
		if id == 9 && len(audio) >= 5 { // Enhanced RTMP ExHeader
			id = float64(binary.BigEndian.Uint32(audio[1:5]))
		}
		meta = append(meta, amfProp{"audiocodecid", id})
		if a.SampleRate > 0 {
			meta = append(meta, amfProp{"audiosamplerate", float64(a.SampleRate)})
		}
		if a.Channels > 0 {
			meta = append(meta, amfProp{"stereo", a.Channels > 1})
		}
	}
	meta = append(meta, amfProp{"encoder", "gms push"})
	return amf0AppendAll(nil, "onMetaData", meta)
}

// namedSource puts the file's name on its reader's errors, as the FLV
// reader does: "clip.mp4: mp4: track 1 sample 50 at offset ...".
type namedSource struct {
	tagSource
	name string
}

func (s namedSource) next() (flvTag, error) {
	tag, err := s.tagSource.next()
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: %w", s.name, err)
	}
	return tag, err
}

// mediaKind names a file's format from its first bytes: the FLV
// signature (§E.2), an ISO BMFF box type at offset 4 (ISO/IEC 14496-12
// §4.2), an MPEG-TS sync byte every 188 bytes (ISO/IEC 13818-1 §2.4.3.2);
// failing those, from the file's extension.
func mediaKind(head []byte, path string) string {
	switch {
	case bytes.HasPrefix(head, []byte("FLV")):
		return "flv"
	case len(head) >= 8 && isTopLevelBox(string(head[4:8])):
		return "mp4"
	case len(head) > 0 && head[0] == 0x47 && (len(head) <= 188 || head[188] == 0x47):
		return "ts"
	}
	switch strings.ToLower(filepath.Ext(path)) {
	case ".flv":
		return "flv"
	case ".mp4", ".m4v", ".m4a", ".mov", ".3gp", ".m4s":
		return "mp4"
	case ".ts", ".m2ts", ".mts":
		return "ts"
	}
	return ""
}

func isTopLevelBox(typ string) bool {
	switch typ {
	case "ftyp", "styp", "moov", "moof", "mdat", "free", "skip", "wide", "sidx":
		return true
	}
	return false
}

// flvFileSource reads an FLV file's tags, naming the tag and its byte
// offset when one cannot be read.
type flvFileSource struct {
	name string
	in   *countingReader
	fr   *flvReader
	tags int
}

func newFLVFileSource(r io.Reader, name string) (*flvFileSource, error) {
	in := &countingReader{r: bufio.NewReaderSize(r, 64<<10)}
	fr, err := newFLVReader(in)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &flvFileSource{name: name, in: in, fr: fr}, nil
}

func (s *flvFileSource) next() (flvTag, error) {
	off := s.in.n
	tag, err := s.fr.next()
	switch {
	case err == io.EOF && s.in.n == off:
		return flvTag{}, io.EOF // the end, at a tag boundary
	case err == io.EOF, errors.Is(err, io.ErrUnexpectedEOF):
		return flvTag{}, fmt.Errorf("%s: FLV tag %d at byte %d: truncated: %w", s.name, s.tags, off, io.ErrUnexpectedEOF)
	case err != nil:
		return flvTag{}, fmt.Errorf("%s: FLV tag %d at byte %d: %w", s.name, s.tags, off, err)
	}
	switch tag.Type {
	case tagAudio, tagVideo, tagScript:
	default:
		return flvTag{}, fmt.Errorf("%s: FLV tag %d at byte %d: %w: unknown TagType %d", s.name, s.tags, off, errFLVTag, tag.Type)
	}
	s.tags++
	return tag, nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// ---- the progress line ----

// progress prints a transfer's state: in place (\r) on a terminal, at
// most ten times a second; otherwise one line a second. Log lines written
// through it end a pending in-place line first.
type progress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	verb    string // PUSHING, PULLING
	pending bool   // an in-place line is on the screen
	printed time.Time

	start                     time.Time
	videoFrames, audioFrames  int64
	bytes                     int64
	firstTime, lastTime, pts  uint32
	haveTime                  bool
	sleep, worstLag           time.Duration
	showSleep                 bool
	reconnects                int
	lastVideoTime, videoDelta uint32
}

func newProgress(w io.Writer, verb string) *progress {
	return &progress{w: w, tty: isTerminal(w), verb: verb, start: time.Now()}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// Write lets a logger share the progress line's writer.
func (p *progress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending {
		io.WriteString(p.w, "\n")
		p.pending = false
	}
	return p.w.Write(b)
}

// frames counts video frames, or audio frames in a stream without video.
func (p *progress) frames() int64 {
	if p.videoFrames > 0 {
		return p.videoFrames
	}
	return p.audioFrames
}

// count notes one tag sent or written.
func (p *progress) count(tag flvTag) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.bytes += int64(len(tag.Data))
	switch tag.Type {
	case tagVideo:
		header, _ := videoInfo(tag.Data)
		if header || isSequenceEnd(tag.Data) {
			return // not a frame: its time is not the media's
		}
		p.videoFrames++
		if p.videoFrames > 1 && tag.Time > p.lastVideoTime {
			p.videoDelta = tag.Time - p.lastVideoTime
		}
		p.lastVideoTime = tag.Time
	case tagAudio:
		if audioIsHeader(tag.Data) {
			return
		}
		p.audioFrames++
	default:
		return
	}
	if !p.haveTime {
		p.firstTime, p.haveTime = tag.Time, true
	}
	p.lastTime = max(p.lastTime, tag.Time)
	p.pts = tagPTS(tag)
}

// isSequenceEnd reports an AVC end of sequence (§E.4.3.1 AVCPacketType 2)
// or an Enhanced RTMP SequenceEnd: markers, not frames.
func isSequenceEnd(p []byte) bool {
	if len(p) < 2 {
		return false
	}
	if p[0]&videoExHeader != 0 {
		return p[0]&0x0F == 2
	}
	return (p[0]&0x0F == codecAVC || p[0]&0x0F == 12) && p[1] == 2
}

// tagPTS is a tag's presentation time: its time plus the composition
// offset of AVC/HEVC frames (§E.4.3.1 CompositionTime; Enhanced RTMP's
// CodedFrames carry it after the FourCC).
func tagPTS(tag flvTag) uint32 {
	d := tag.Data
	if tag.Type != tagVideo || len(d) < 5 {
		return tag.Time
	}
	var cts []byte
	switch {
	case d[0]&videoExHeader != 0:
		fourCC := string(d[1:5])
		if d[0]&0x0F == exCodedFrames && (fourCC == "avc1" || fourCC == "hvc1") && len(d) >= 8 {
			cts = d[5:8]
		}
	case (d[0]&0x0F == codecAVC || d[0]&0x0F == 12) && d[1] == 1:
		cts = d[2:5]
	}
	if cts == nil {
		return tag.Time
	}
	off := int32(be24(cts)<<8) >> 8 // SI24
	return uint32(int64(tag.Time) + int64(off))
}

func (p *progress) line() string {
	elapsed := time.Since(p.start)
	fps := 0.0
	if s := elapsed.Seconds(); s > 0 {
		fps = float64(p.frames()) / s
	}
	sleep := ""
	if p.showSleep {
		sleep = fmt.Sprintf(", sleep = %dms", p.sleep.Milliseconds())
	}
	return fmt.Sprintf("[%s] pts = %.3fs, ts = %.3fs%s, frame = %d, fps = %.2f, size = %s",
		p.verb, float64(p.pts)/1000, elapsed.Seconds(), sleep, p.frames(), fps, humanBytes(p.bytes))
}

// update prints the line if it is due.
func (p *progress) update() {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	every := time.Second
	if p.tty {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.printed) < every {
		return
	}
	p.printed = now
	if p.tty {
		fmt.Fprintf(p.w, "\r%s\x1b[K", p.line())
		p.pending = true
		return
	}
	fmt.Fprintln(p.w, p.line())
}

// summary ends the progress with the totals.
func (p *progress) summary(what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending {
		fmt.Fprintf(p.w, "\r%s\x1b[K\n", p.line())
		p.pending = false
	}
	elapsed := time.Since(p.start)
	fps := 0.0
	if s := elapsed.Seconds(); s > 0 {
		fps = float64(p.frames()) / s
	}
	var media uint32
	if p.haveTime {
		media = p.lastTime - p.firstTime
	}
	s := fmt.Sprintf("%s: %d frames, %s, %.3fs of media in %.3fs, %.2f fps on average", what, p.frames(),
		humanBytes(p.bytes), float64(media)/1000, elapsed.Seconds(), fps)
	if p.showSleep {
		s += fmt.Sprintf(", pacing lagged %dms at worst", p.worstLag.Milliseconds())
	}
	if p.reconnects > 0 {
		s += fmt.Sprintf(", %d reconnects", p.reconnects)
	}
	fmt.Fprintln(p.w, s)
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ---- push ----

// pushOptions are push's flags.
type pushOptions struct {
	speed     float64       // 1 real time, 2 twice as fast, 0 as fast as the server takes it
	loops     int           // times to send the file; 0 forever
	reconnect time.Duration // after a drop, how long to keep trying (0: give up at once)
	client    rtmpClientOptions
}

func pushUsage(fs *flag.FlagSet, out io.Writer) func() {
	return func() {
		fmt.Fprintln(out, "usage: gms push [flags] FILE rtmp://HOST[:PORT]/APP/NAME[?QUERY]\n"+
			"Publishes an FLV, MP4 or MPEG-TS file in real time by its timestamps.")
		fs.PrintDefaults()
	}
}

// runPush is `gms push`: it returns nil when the file was sent (or
// Ctrl-C ended it), an error otherwise.
func runPush(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gms push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = pushUsage(fs, stderr)
	var opt pushOptions
	fs.Float64Var(&opt.speed, "speed", 1, "pace at this `factor` of real time (0 = as fast as the server takes it)")
	fs.IntVar(&opt.loops, "loop", 1, "send the file `N` times, timestamps continuing (0 = forever)")
	fs.DurationVar(&opt.reconnect, "reconnect", time.Minute, "after a dropped connection, keep trying to publish again for this `duration` (0 = give up)")
	fs.DurationVar(&opt.client.Timeout, "timeout", clientTimeout, "`duration` to wait for the server to connect and answer")
	insecure := fs.Bool("insecure", false, "rtmps: do not verify the server's certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("push needs FILE and URL")
	}
	if opt.speed < 0 || opt.loops < 0 {
		return errors.New("push: -speed and -loop must not be negative")
	}
	if *insecure {
		opt.client.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	prog := newProgress(stderr, "PUSHING")
	prog.showSleep = opt.speed > 0
	log := slog.New(slog.NewTextHandler(prog, nil))
	opt.client.Log = log
	p := &pusher{path: fs.Arg(0), url: fs.Arg(1), opt: opt, log: log, prog: prog}
	return p.run(ctx)
}

// pusher sends one file to one URL, as many times as asked.
type pusher struct {
	path, url string
	opt       pushOptions
	log       *slog.Logger
	prog      *progress
	conn      *rtmpClientConn

	// What a reconnected publisher sends before its first keyframe.
	meta, audioHeader, videoHeader *flvTag
	hasVideo                       bool
	waitKey                        bool // after a reconnect: skip to the next keyframe
	sendHeaders                    bool // after a reconnect: headers before that keyframe
	// codecs finds headers and keyframes as the server does, from the
	// bitstream when a file leaves frame types unmarked; class is what
	// it said of the tag remember saw last.
	codecs codecState
	class  mediaClass

	offset  uint32 // added to the file's timestamps in this pass
	maxTime uint32 // the latest timestamp sent, offset included

	clockSet   bool
	clockStart time.Time
	clockBase  uint32 // the timestamp sent at clockStart
}

func (p *pusher) run(ctx context.Context) (err error) {
	src, closer, err := openMedia(p.path)
	if err != nil {
		return err
	}
	if p.conn, err = p.dial(ctx); err != nil {
		closer.Close()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	p.log.Info("publishing", "file", p.path, "url", p.conn.u.String())
	defer func() {
		if cerr := p.conn.close(); cerr != nil && err == nil && ctx.Err() == nil {
			p.log.Warn("closing", "err", cerr)
		}
		p.prog.summary("push")
	}()
	for pass := 0; p.opt.loops == 0 || pass < p.opt.loops; pass++ {
		if pass > 0 {
			if src, closer, err = openMedia(p.path); err != nil {
				return err
			}
		}
		first, sent, err := p.sendFile(ctx, src, pass)
		closer.Close()
		switch {
		case ctx.Err() != nil:
			return nil // Ctrl-C: a clean end
		case err != nil:
			return err
		case sent == 0:
			return fmt.Errorf("%s: no audio or video to send", p.path)
		}
		// The next pass continues one frame after the last.
		step := p.prog.videoDelta
		if step == 0 || step > 1000 {
			step = 40
		}
		p.offset = p.maxTime + step - first
	}
	return nil
}

func (p *pusher) dial(ctx context.Context) (*rtmpClientConn, error) {
	c, err := dialRTMPClient(ctx, p.url, true, p.opt.client)
	if err != nil {
		return nil, err
	}
	if err := c.publish(); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

// sendFile sends one pass of the file. first is the file's first
// timestamp, sent the number of media tags sent.
func (p *pusher) sendFile(ctx context.Context, src tagSource, pass int) (first uint32, sent int, err error) {
	haveFirst := false
	for ctx.Err() == nil {
		tag, err := src.next()
		if err == io.EOF {
			return first, sent, nil
		}
		if err != nil {
			return first, sent, err
		}
		if tag.Type == tagScript {
			tag.Data = liveMetadata(tag.Data)
		}
		isHeader := p.remember(tag)
		if !haveFirst && !isHeader {
			// The next pass is placed after the first frame, not after
			// metadata or headers that may sit at 0 while frames start
			// later (an MP4 edit list, an FLV cut from a stream).
			first, haveFirst = tag.Time, true
		}
		if pass > 0 && isHeader {
			continue // the first pass sent them; the server still has them
		}
		tag.Time += p.offset
		if !p.resumeAt(tag) {
			continue
		}
		if err := p.pace(ctx, tag, isHeader); err != nil {
			return first, sent, nil
		}
		if err := p.send(ctx, tag); err != nil {
			return first, sent, err
		}
		if tag.Type != tagScript {
			sent++
		}
	}
	return first, sent, nil
}

// liveMetadata is a file's onMetaData as a live stream's: duration 0
// and no filesize, as ffmpeg writes them when it streams FLV. The file's
// values would be wrong for the stream (looped, cut, recorded, pulled for
// a while) and players and ffprobe believe them: a 2 s pull of a pushed
// 6 s file said 6 s. Other data is sent as it is.
func liveMetadata(data []byte) []byte {
	vals, err := amf0DecodeAll(data)
	if err != nil || len(vals) != 2 || vals[0] != "onMetaData" {
		return data
	}
	var props []amfProp
	switch v := vals[1].(type) {
	case amfECMAArray:
		props = v
	case amfObject:
		props = v
	default:
		return data
	}
	out := make(amfECMAArray, 0, len(props))
	for _, prop := range props {
		switch prop.Key {
		case "filesize":
			continue
		case "duration":
			prop.Value = 0.0
		}
		out = append(out, prop)
	}
	return amf0AppendAll(nil, "onMetaData", out)
}

// remember keeps the metadata and sequence headers, for a reconnect.
func (p *pusher) remember(tag flvTag) (isHeader bool) {
	keep := func(dst **flvTag) {
		*dst = &flvTag{Type: tag.Type, Data: bytes.Clone(tag.Data)}
	}
	p.class = mediaClass{}
	switch tag.Type {
	case tagScript:
		keep(&p.meta)
		return true
	case tagVideo:
		p.hasVideo = true
		if p.class = p.codecs.classifyVideo(tag.Data); p.class.header {
			keep(&p.videoHeader)
			return true
		}
	case tagAudio:
		if p.class = p.codecs.classifyAudio(tag.Data); p.class.header {
			keep(&p.audioHeader)
			return true
		}
	}
	return false
}

// resumeAt says whether a tag goes out after a reconnect: nothing until
// the next video keyframe (or the next audio frame, without video), then
// the headers with that frame's time, then the frame.
func (p *pusher) resumeAt(tag flvTag) bool {
	if !p.waitKey {
		return true
	}
	switch tag.Type {
	case tagVideo:
		if !p.class.key {
			return false
		}
	case tagAudio:
		if p.hasVideo || p.class.header {
			return false
		}
	default:
		return false
	}
	p.waitKey = false
	return true
}

// pace sleeps until the tag's time on the pacing clock, as ffmpeg -re
// does; it notes the sleep and how late the tag is at worst. Metadata
// and sequence headers go at once and do not start the clock: a file
// whose frames start at 10 s (headers at 0) starts at once, as
// ffmpeg -re starts at the first frame.
func (p *pusher) pace(ctx context.Context, tag flvTag, isHeader bool) error {
	if p.opt.speed <= 0 || isHeader {
		return nil
	}
	ts := tag.Time
	now := time.Now()
	if !p.clockSet {
		p.clockSet, p.clockStart, p.clockBase = true, now, ts
	}
	if ts < p.maxTime {
		// Behind a tag already sent (audio and video interleave): due at once,
		// and no lag of the pacing.
		return nil
	}
	media := time.Duration(int64(ts)-int64(p.clockBase)) * time.Millisecond
	wait := time.Until(p.clockStart.Add(time.Duration(float64(media) / p.opt.speed)))
	if wait > maxPacingJump {
		p.log.Info("timestamp jump: pacing starts over", "ts", ts)
		p.clockStart, p.clockBase, wait = now, ts, 0
	}
	p.prog.mu.Lock()
	p.prog.sleep = max(wait, 0)
	p.prog.worstLag = max(p.prog.worstLag, -wait)
	p.prog.mu.Unlock()
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// send writes a tag, reconnecting when the connection drops; after a
// reconnect the tag goes out only if the stream may resume at it.
func (p *pusher) send(ctx context.Context, tag flvTag) error {
	for {
		err := p.write(tag)
		if err == nil {
			p.maxTime = max(p.maxTime, tag.Time)
			p.prog.count(tag)
			p.prog.update()
			return nil
		}
		if err := p.reconnect(ctx, err); err != nil || ctx.Err() != nil {
			return err
		}
		if !p.resumeAt(tag) {
			return nil
		}
	}
}

// write sends a tag, after the headers when a reconnect left them due.
func (p *pusher) write(tag flvTag) error {
	if p.sendHeaders {
		for _, h := range []*flvTag{p.meta, p.audioHeader, p.videoHeader} {
			if h != nil {
				if err := p.conn.writeTag(flvTag{Type: h.Type, Time: tag.Time, Data: h.Data}); err != nil {
					return err
				}
			}
		}
		p.sendHeaders = false
	}
	return p.conn.writeTag(tag)
}

// reconnect replaces a dropped connection, with back-off, for up to
// -reconnect. The stream then resumes at the next keyframe.
func (p *pusher) reconnect(ctx context.Context, cause error) error {
	p.conn.close()
	if ctx.Err() != nil {
		return nil
	}
	if p.opt.reconnect <= 0 {
		return cause
	}
	p.log.Warn("connection lost; reconnecting", "err", cause)
	giveUp := time.Now().Add(p.opt.reconnect)
	delay := reconnectFirstDelay
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		conn, err := p.dial(ctx)
		if err == nil {
			p.conn = conn
			p.prog.mu.Lock()
			p.prog.reconnects++
			p.prog.mu.Unlock()
			p.log.Info("reconnected: resuming at the next keyframe", "attempt", attempt)
			p.waitKey, p.sendHeaders, p.clockSet = true, true, false
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Now().After(giveUp) {
			return fmt.Errorf("gave up reconnecting after %s: %w", p.opt.reconnect, err)
		}
		p.log.Warn("reconnect failed", "attempt", attempt, "err", err, "retry_in", delay)
		delay = min(2*delay, reconnectMaxDelay)
	}
}
