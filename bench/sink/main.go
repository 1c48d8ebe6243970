// Command sink is a fast, Elasticsearch/OpenSearch-compatible bulk endpoint
// for benchmarking ccf-agent. It keeps no documents: it counts them per
// index, tracks each doc's `seq` for exactly-once checks and its `wt` (write
// time, ns since epoch) for end-to-end latency, and can simulate an outage.
//
//	sink -port 0                      # prints "SINK_READY <port>"
//	curl -XPOST '127.0.0.1:PORT/_ccf/down?seconds=40&mode=refuse'
//	curl 127.0.0.1:PORT/_ccf/stats
//	sink -load http://127.0.0.1:PORT -docs 2000000   # throughput self-test client
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A request is listed in stats' slow_requests when a doc in it waited longer than this.
const slowNs, maxSlow = 60_000_000, 1000

const infoBody = `{"name":"sink","cluster_name":"bench","cluster_uuid":"bench","version":{"distribution":"opensearch","number":"2.19.6","lucene_version":"9.12.1","minimum_wire_compatibility_version":"7.10.0","minimum_index_compatibility_version":"7.0.0"},"tagline":"The OpenSearch Project: https://opensearch.org/"}`

type indexStats struct {
	Docs       int64 `json:"docs"`
	Duplicates int64 `json:"duplicates"`
	seen       *seqSet
}

type sink struct {
	mu        sync.Mutex
	indices   map[string]*indexStats
	all       *seqSet // union over indices
	dups      int64   // same seq twice in the same index
	noSeq     int64
	maxSeq    int64
	minSeq    int64
	lat       []int64          // ns, docs with wt
	slow      []map[string]any // requests holding a doc older than slowNs: where a latency tail comes from
	firstNs   int64
	lastNs    int64
	perSecond []int64 // docs per second since the first doc
	bulkReqs  int64
	gzipReqs  int64
	bytesIn   int64
	bytesRaw  int64
	rejected  int64
	badLines  int64
	other     map[string]int64
	outages   []map[string]any
	awaitUp   int64 // end of the last outage (unix ns) until a doc arrives after it, else 0
	started   time.Time

	// outage simulation
	downMu    sync.Mutex
	downUntil time.Time
	downMode  string
	addr      string
	srv       *http.Server
	ln        net.Listener
	connMu    sync.Mutex
	conns     map[net.Conn]struct{}
}

func newSink() *sink {
	s := &sink{started: time.Now(), conns: map[net.Conn]struct{}{}}
	s.reset()
	return s
}

func (s *sink) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.indices, s.all, s.other = map[string]*indexStats{}, newSeqSet(), map[string]int64{}
	s.dups, s.noSeq, s.maxSeq, s.minSeq = 0, 0, -1, -1
	s.lat, s.perSecond, s.outages, s.slow = nil, []int64{}, []map[string]any{}, []map[string]any{}
	s.awaitUp = 0
	s.firstNs, s.lastNs, s.bulkReqs, s.gzipReqs, s.bytesIn, s.bytesRaw, s.rejected, s.badLines = 0, 0, 0, 0, 0, 0, 0, 0
}

func (s *sink) isDown() (bool, string) {
	s.downMu.Lock()
	defer s.downMu.Unlock()
	return time.Now().Before(s.downUntil), s.downMode
}

// goDown simulates an outage. refuse: the listener is closed (connect gets
// ECONNREFUSED, like a dead node) and reopened afterwards; close: connections
// are accepted then dropped without a response; 503: every data request gets
// 503. In all modes open connections are cut at the start.
func (s *sink) goDown(d time.Duration, mode string) bool {
	s.downMu.Lock()
	start := time.Now()
	if start.Before(s.downUntil) {
		s.downMu.Unlock()
		return false // overlapping outages would race on re-listening
	}
	s.downUntil, s.downMode = start.Add(d), mode
	s.downMu.Unlock()
	s.mu.Lock()
	s.outages = append(s.outages, map[string]any{"start_unix_ns": start.UnixNano(), "seconds": d.Seconds(), "mode": mode})
	s.awaitUp = start.Add(d).UnixNano()
	s.mu.Unlock()
	log.Printf("down for %s (mode %s)", d, mode)
	if mode == "refuse" {
		s.ln.Close()
	}
	s.connMu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.connMu.Unlock()
	time.AfterFunc(d, func() {
		if mode == "refuse" {
			for {
				ln, err := net.Listen("tcp", s.addr)
				if err == nil {
					s.ln = ln
					go s.srv.Serve(ln)
					break
				}
				log.Printf("re-listen: %v", err)
				time.Sleep(50 * time.Millisecond)
			}
		}
		log.Printf("up again")
	})
	return true
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if strings.HasPrefix(p, "/_ccf/") {
		s.control(w, r)
		return
	}
	if down, mode := s.isDown(); down {
		s.mu.Lock()
		s.rejected++
		s.mu.Unlock()
		if mode == "503" {
			writeJSON(w, 503, `{"error":{"type":"unavailable_shards_exception","reason":"sink is down (benchmark outage)"},"status":503}`)
			return
		}
		if hj, ok := w.(http.Hijacker); ok {
			if c, _, err := hj.Hijack(); err == nil {
				c.Close()
				return
			}
		}
		writeJSON(w, 503, `{"status":503}`)
		return
	}
	// The elasticsearch-py 8 client refuses servers without this header; real
	// OpenSearch does not send it, and OpenSearch clients ignore it.
	w.Header().Set("X-Elastic-Product", "Elasticsearch")
	switch {
	case p == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		writeJSON(w, 200, infoBody)
	case strings.HasSuffix(p, "/_bulk") && (r.Method == http.MethodPost || r.Method == http.MethodPut):
		s.bulk(w, r, strings.Trim(strings.TrimSuffix(p, "_bulk"), "/"))
	case p == "/_cluster/health":
		writeJSON(w, 200, `{"cluster_name":"bench","status":"green","number_of_nodes":1}`)
	default:
		// Templates, index creation, etc.: acknowledge writes, 404 reads, and
		// record them so the harness shows what else the agent calls.
		io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		if key := r.Method + " " + p; len(s.other) < 200 || s.other[key] > 0 {
			s.other[key]++
		}
		s.mu.Unlock()
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			writeJSON(w, 404, `{"error":{"type":"resource_not_found_exception","reason":"not in sink"},"status":404}`)
		} else {
			writeJSON(w, 200, `{"acknowledged":true}`)
		}
	}
}

func writeJSON(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(code)
	io.WriteString(w, body)
}

var (
	bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
	gzPool  sync.Pool
	keySeq  = newKey(`"seq"`)
	keyWt   = newKey(`"wt"`)
	keyIdx  = newKey(`"_index"`)
	keyID   = newKey(`"_id"`)
)

type entry struct {
	idx    int // into names
	seq    int64
	hasSeq bool
	wt     int64
}

func (s *sink) bulk(w http.ResponseWriter, r *http.Request, urlIndex string) {
	t0 := time.Now()
	in := bufPool.Get().(*bytes.Buffer)
	raw := bufPool.Get().(*bytes.Buffer)
	out := bufPool.Get().(*bytes.Buffer)
	defer func() {
		in.Reset()
		raw.Reset()
		out.Reset()
		bufPool.Put(in)
		bufPool.Put(raw)
		bufPool.Put(out)
	}()
	if _, err := in.ReadFrom(r.Body); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	body, gz := in.Bytes(), false
	if strings.Contains(r.Header.Get("Content-Encoding"), "gzip") {
		gz = true
		zr, _ := gzPool.Get().(*gzip.Reader)
		var err error
		if zr == nil {
			zr, err = gzip.NewReader(bytes.NewReader(body))
		} else {
			err = zr.Reset(bytes.NewReader(body))
		}
		if err == nil {
			_, err = raw.ReadFrom(zr)
			gzPool.Put(zr)
		}
		if err != nil {
			http.Error(w, "bad gzip body: "+err.Error(), 400)
			return
		}
		body = raw.Bytes()
	}
	arrival := time.Now().UnixNano()

	// Parse without the lock; merge into the shared counters once per request.
	names := [][]byte{[]byte(urlIndex)}
	var entries []entry
	bad := int64(0)
	out.WriteString(`{"took":`)
	out.WriteString(strconv.FormatInt(time.Since(t0).Milliseconds(), 10))
	out.WriteString(`,"errors":false,"items":[`)
	first := true
	for rest := body; len(rest) > 0; {
		var action, doc []byte
		action, rest = nextLine(rest)
		if len(bytes.TrimSpace(action)) == 0 {
			continue
		}
		op := actionOp(action)
		if !bytes.Equal(op, []byte("delete")) {
			doc, rest = nextLine(rest)
		}
		idx := 0
		if v, ok := stringValue(fieldValue(action, keyIdx)); ok {
			idx = len(names) - 1
			if !bytes.Equal(names[idx], v) {
				names = append(names, v)
				idx++
			}
		} else if urlIndex == "" {
			bad++
		}
		id, ok := stringValue(fieldValue(action, keyID))
		if !first {
			out.WriteByte(',')
		}
		first = false
		out.WriteString(`{"`)
		out.Write(op)
		out.WriteString(`":{"_index":"`)
		out.Write(names[idx])
		out.WriteString(`","_id":"`)
		if ok {
			out.Write(id)
		} else {
			fmt.Fprintf(out, "sink-%d-%d", arrival, len(entries))
		}
		out.WriteString(`","_version":1,"result":"created","status":201}}`)
		if doc == nil {
			continue
		}
		e := entry{idx: idx}
		e.seq, e.hasSeq = parseInt(fieldValue(doc, keySeq))
		if wt, ok := parseInt(fieldValue(doc, keyWt)); ok {
			e.wt = wt
		}
		entries = append(entries, e)
	}
	out.WriteString(`]}`)
	s.record(names, entries, arrival, int64(in.Len()), int64(len(body)), gz, bad, t0.UnixNano())
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	w.Write(out.Bytes())
}

func (s *sink) record(names [][]byte, entries []entry, arrival, nIn, nRaw int64, gz bool, bad, started int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bulkReqs++
	s.bytesIn += nIn
	s.bytesRaw += nRaw
	s.badLines += bad
	if gz {
		s.gzipReqs++
	}
	if len(entries) == 0 {
		return
	}
	if s.firstNs == 0 {
		s.firstNs = arrival
	}
	if s.awaitUp != 0 && arrival >= s.awaitUp { // how fast the agent came back after the outage
		s.outages[len(s.outages)-1]["first_doc_after_unix_ns"] = arrival
		s.awaitUp = 0
	}
	s.lastNs = arrival
	if sec := (arrival - s.firstNs) / 1e9; sec < 86400 {
		for int64(len(s.perSecond)) <= sec {
			s.perSecond = append(s.perSecond, 0)
		}
		s.perSecond[sec] += int64(len(entries))
	}
	stats := make([]*indexStats, len(names)) // resolved lazily: names[0] (URL index) may be unused
	oldest, newest := int64(0), int64(1<<62)
	for _, e := range entries {
		st := stats[e.idx]
		if st == nil {
			name := string(names[e.idx])
			if name == "" {
				name = "_no_index"
			}
			if st = s.indices[name]; st == nil {
				st = &indexStats{seen: newSeqSet()}
				s.indices[name] = st
			}
			stats[e.idx] = st
		}
		st.Docs++
		if !e.hasSeq {
			s.noSeq++
			continue
		}
		if !st.seen.add(e.seq) {
			st.Duplicates++
			s.dups++
		}
		s.all.add(e.seq)
		if e.seq > s.maxSeq {
			s.maxSeq = e.seq
		}
		if s.minSeq < 0 || e.seq < s.minSeq {
			s.minSeq = e.seq
		}
		if e.wt > 0 {
			s.lat = append(s.lat, arrival-e.wt)
			oldest = max(oldest, arrival-e.wt)
			newest = min(newest, arrival-e.wt)
		}
	}
	if oldest > slowNs && len(s.slow) < maxSlow {
		s.slow = append(s.slow, map[string]any{
			"arrival_unix_ns": arrival, "body_ms": float64(arrival-started) / 1e6, "docs": len(entries),
			"oldest_ms": float64(oldest) / 1e6, "newest_ms": float64(newest) / 1e6})
	}
}

func (s *sink) stats() map[string]any {
	s.mu.Lock()
	lat := slices.Clone(s.lat)
	total := int64(0)
	idx := map[string]any{}
	for name, st := range s.indices {
		total += st.Docs
		idx[name] = map[string]int64{"docs": st.Docs, "distinct": st.seen.n, "duplicates": st.Duplicates}
	}
	down, mode := s.isDown()
	// copies: the JSON is encoded after the lock is released, while requests keep updating these maps
	other := maps.Clone(s.other)
	outages := make([]map[string]any, len(s.outages))
	for i, o := range s.outages {
		outages[i] = maps.Clone(o)
	}
	out := map[string]any{
		"docs_total": total, "indices": idx, "distinct_seqs": s.all.n, "duplicates": s.dups,
		"max_seq": s.maxSeq, "min_seq": s.minSeq, "docs_without_seq": s.noSeq,
		"first_doc_unix_ns": s.firstNs, "last_doc_unix_ns": s.lastNs, "per_second": slices.Clone(s.perSecond),
		"bulk_requests": s.bulkReqs, "gzip_requests": s.gzipReqs, "bytes_in": s.bytesIn, "bytes_decoded": s.bytesRaw,
		"rejected_requests": s.rejected, "actions_without_index": s.badLines, "other_requests": other,
		"outages": outages, "down": down, "down_mode": mode, "uptime_s": time.Since(s.started).Seconds(),
		"now_unix_ns": time.Now().UnixNano(), "slow_requests": slices.Clone(s.slow),
	}
	s.mu.Unlock()
	// sort outside the lock: it can take ~100 ms for a million samples
	slices.Sort(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6
	}
	l := map[string]any{"count": len(lat), "median": pct(0.5), "p99": pct(0.99), "max": 0.0, "min": 0.0}
	if len(lat) > 0 {
		l["max"], l["min"] = float64(lat[len(lat)-1])/1e6, float64(lat[0])/1e6
	}
	out["latency_ms"] = l
	return out
}

func (s *sink) control(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	switch r.URL.Path {
	case "/_ccf/stats":
		b, _ := json.Marshal(s.stats())
		writeJSON(w, 200, string(b))
	case "/_ccf/down":
		secs, err := strconv.ParseFloat(q.Get("seconds"), 64)
		mode := q.Get("mode")
		if mode == "" {
			mode = "refuse"
		}
		if err != nil || secs <= 0 || (mode != "refuse" && mode != "close" && mode != "503") {
			writeJSON(w, 400, `{"error":"need seconds>0 and mode refuse|close|503"}`)
			return
		}
		if down, _ := s.isDown(); down {
			writeJSON(w, 409, `{"error":"already down"}`)
			return
		}
		w.Header().Set("Connection", "close")
		writeJSON(w, 200, `{"acknowledged":true}`)
		// after this response is flushed: refuse mode closes every connection
		time.AfterFunc(20*time.Millisecond, func() { s.goDown(time.Duration(secs*float64(time.Second)), mode) })
	case "/_ccf/reset":
		s.reset()
		writeJSON(w, 200, `{"acknowledged":true}`)
	default:
		writeJSON(w, 404, `{"error":"unknown control path"}`)
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1", "listen address")
	port := flag.Int("port", 0, "listen port (0: any free port)")
	downAfter := flag.Float64("down-after", 0, "seconds after start to go down (with -down-for)")
	downFor := flag.Float64("down-for", 0, "outage length in seconds")
	downMode := flag.String("down-mode", "refuse", "outage mode: refuse, close or 503")
	quiet := flag.Bool("quiet", false, "no log lines on stderr")
	load := flag.String("load", "", "client mode: send generated bulk requests to this base URL")
	docs := flag.Int("docs", 2_000_000, "client mode: documents to send")
	batch := flag.Int("batch", 1000, "client mode: documents per bulk request")
	conns := flag.Int("conns", 2, "client mode: concurrent connections")
	gz := flag.Bool("gzip", false, "client mode: gzip request bodies (pre-compressed before timing)")
	flag.Parse()
	if *quiet {
		log.SetOutput(io.Discard)
	}
	if *load != "" {
		os.Exit(runLoad(*load, *docs, *batch, *conns, *gz))
	}

	s := newSink()
	s.addr = net.JoinHostPort(*addr, strconv.Itoa(*port))
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		log.Fatal(err)
	}
	s.ln, s.addr = ln, ln.Addr().String() // pin the chosen port for re-listening after an outage
	s.srv = &http.Server{
		Handler: s,
		ConnState: func(c net.Conn, st http.ConnState) {
			s.connMu.Lock()
			defer s.connMu.Unlock()
			switch st {
			case http.StateNew:
				s.conns[c] = struct{}{}
			case http.StateHijacked, http.StateClosed:
				delete(s.conns, c)
			}
		},
		ErrorLog: log.New(io.Discard, "", 0), // accept errors during "refuse" outages are expected
	}
	if *downFor > 0 {
		time.AfterFunc(time.Duration(*downAfter*float64(time.Second)), func() {
			s.goDown(time.Duration(*downFor*float64(time.Second)), *downMode)
		})
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		// final stats on stdout so a caller that lost the HTTP port still gets them
		b, _ := json.Marshal(s.stats())
		fmt.Println(string(b))
		os.Exit(0)
	}()
	fmt.Printf("SINK_READY %d\n", ln.Addr().(*net.TCPAddr).Port)
	go s.srv.Serve(ln)
	select {}
}
