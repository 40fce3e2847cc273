// Command goport counts packets the way Tailscale's Go package
// net/connstats does, to compare connstats against it on the same packets
// (benchmarks/go_compare.py).  Written for this comparison, not copied: it
// has the shape of connstats.Statistics.UpdateTxVirtual (one decode into a
// packet.Parsed-like struct with netip.AddrPort endpoints, the service
// address check, then a map from connection to counts under one mutex,
// read and written back as the reference does) and nothing else.
//
//	goport -packets FILE [-path single|batch] [-rounds N] [-repeat R] [-dump]
//
// FILE holds the packets as <u32 little-endian length><bytes>, in order.  A
// round sends every packet once (the table is warmed with one round first);
// -repeat R sends the whole file R times per round.  The output is one JSON
// object with the median and minimum ns per packet over the rounds; -dump
// instead prints the table after one round, one connection per line, for
// the correctness check.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"sort"
	"sync"
	"time"
)

// ---- decoding (the shape of tailscale.com/net/packet.Parsed.Decode) ----

const (
	protoICMPv4   = 1
	protoIGMP     = 2
	protoTCP      = 6
	protoUDP      = 17
	protoTSMP     = 99
	protoICMPv6   = 58
	protoSCTP     = 132
	protoFragment = 255
	minFragBlks   = (60 + 20) / 8
)

type parsed struct {
	b         []byte
	subofs    int
	dataofs   int
	length    int
	IPVersion uint8
	IPProto   uint8
	Src       netip.AddrPort
	Dst       netip.AddrPort
	TCPFlags  uint8
}

func withIP(ap netip.AddrPort, ip netip.Addr) netip.AddrPort {
	return netip.AddrPortFrom(ip, ap.Port())
}

func withPort(ap netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr(), port)
}

func (q *parsed) decode(b []byte) {
	q.b = b
	if len(b) < 1 {
		q.IPVersion = 0
		q.IPProto = 0
		return
	}
	q.IPVersion = b[0] >> 4
	switch q.IPVersion {
	case 4:
		q.decode4(b)
	case 6:
		q.decode6(b)
	default:
		q.IPVersion = 0
		q.IPProto = 0
	}
}

func (q *parsed) ports(sub []byte, need int) bool {
	if len(sub) < need {
		q.IPProto = 0
		return false
	}
	q.Src = withPort(q.Src, binary.BigEndian.Uint16(sub[0:2]))
	q.Dst = withPort(q.Dst, binary.BigEndian.Uint16(sub[2:4]))
	return true
}

func (q *parsed) decode4(b []byte) {
	if len(b) < 20 {
		q.IPVersion = 0
		q.IPProto = 0
		return
	}
	q.IPProto = b[9]
	q.length = int(binary.BigEndian.Uint16(b[2:4]))
	if len(b) < q.length {
		q.IPProto = 0
		return
	}
	q.Src = withIP(q.Src, netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	q.Dst = withIP(q.Dst, netip.AddrFrom4([4]byte{b[16], b[17], b[18], b[19]}))
	q.subofs = int((b[0] & 0x0F) << 2)
	if q.subofs > q.length {
		q.IPProto = 0
		return
	}
	sub := b[q.subofs:]
	sub = sub[:len(sub):len(sub)]
	frag := binary.BigEndian.Uint16(b[6:8])
	more := frag&0x2000 != 0
	off := frag & 0x1FFF
	if off != 0 {
		if off < minFragBlks {
			q.IPProto = 0
			return
		}
		q.IPProto = protoFragment
		return
	}
	switch q.IPProto {
	case protoICMPv4:
		if len(sub) < 4 {
			q.IPProto = 0
			return
		}
		q.Src = withPort(q.Src, 0)
		q.Dst = withPort(q.Dst, 0)
		q.dataofs = q.subofs + 4
	case protoIGMP:
		if len(sub) < 8 {
			q.IPProto = 0
		}
	case protoTCP:
		if q.ports(sub, 20) {
			q.TCPFlags = sub[13]
			q.dataofs = q.subofs + int((sub[12]&0xF0)>>2)
		}
	case protoUDP:
		if q.ports(sub, 8) {
			q.dataofs = q.subofs + 8
		}
	case protoSCTP:
		q.ports(sub, 12)
	case protoTSMP:
		if more || len(sub) < 7 {
			q.IPProto = 0
			return
		}
		q.dataofs = q.subofs
	case protoFragment:
		q.IPProto = 0
	}
}

func (q *parsed) decode6(b []byte) {
	if len(b) < 40 {
		q.IPVersion = 0
		q.IPProto = 0
		return
	}
	q.IPProto = b[6]
	q.length = int(binary.BigEndian.Uint16(b[4:6])) + 40
	if len(b) < q.length {
		q.IPProto = 0
		return
	}
	src, _ := netip.AddrFromSlice(b[8:24])
	dst, _ := netip.AddrFromSlice(b[24:40])
	q.Src = withIP(q.Src, src)
	q.Dst = withIP(q.Dst, dst)
	q.subofs = 40
	sub := b[40:]
	sub = sub[:len(sub):len(sub)]
	switch q.IPProto {
	case protoICMPv6:
		if len(sub) < 4 {
			q.IPProto = 0
			return
		}
		q.Src = withPort(q.Src, 0)
		q.Dst = withPort(q.Dst, 0)
		q.dataofs = q.subofs + 4
	case protoTCP:
		if q.ports(sub, 20) {
			q.TCPFlags = sub[13]
			q.dataofs = q.subofs + int((sub[12]&0xF0)>>2)
		}
	case protoUDP:
		if q.ports(sub, 8) {
			q.dataofs = q.subofs + 8
		}
	case protoSCTP:
		q.ports(sub, 12)
	case protoTSMP:
		if len(sub) < 7 {
			q.IPProto = 0
			return
		}
		q.dataofs = q.subofs
	case protoFragment:
		q.IPProto = 0
	}
}

// ---- counting (the shape of net/connstats.Statistics) ----

type connection struct {
	Proto uint8
	Src   netip.AddrPort
	Dst   netip.AddrPort
}

type counts struct {
	TxPackets, TxBytes, RxPackets, RxBytes uint64
}

var (
	serviceIPv4 = netip.AddrFrom4([4]byte{100, 100, 100, 100})
	serviceIPv6 = netip.MustParseAddr("fd7a:115c:a1e0::53")
)

type statistics struct {
	mu       sync.Mutex
	start    time.Time
	virtual  map[connection]counts
	physical map[connection]counts
}

func (s *statistics) updateTxVirtual(b []byte) {
	var p parsed
	p.decode(b)
	s.updateVirtual(p.IPProto, p.Src, p.Dst, 1, len(b), false)
}

func (s *statistics) updateVirtual(proto uint8, src, dst netip.AddrPort, packets, bytes int, receive bool) {
	switch dst.Addr() {
	case serviceIPv4, serviceIPv6:
		return
	}
	conn := connection{Proto: proto, Src: src, Dst: dst}
	s.mu.Lock()
	defer s.mu.Unlock()
	cnts, found := s.virtual[conn]
	if !found && !s.preInsertConn() {
		return
	}
	if receive {
		cnts.RxPackets += uint64(packets)
		cnts.RxBytes += uint64(bytes)
	} else {
		cnts.TxPackets += uint64(packets)
		cnts.TxBytes += uint64(bytes)
	}
	s.virtual[conn] = cnts
}

func (s *statistics) preInsertConn() bool {
	if s.virtual == nil && s.physical == nil {
		s.start = time.Now().UTC()
		s.virtual = make(map[connection]counts)
		s.physical = make(map[connection]counts)
	}
	return true
}

// ---- the benchmark ----

func readPackets(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var out [][]byte
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		b := make([]byte, binary.LittleEndian.Uint32(head[:]))
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

func main() {
	path := flag.String("packets", "", "packet file")
	mode := flag.String("path", "single", "single: one call per packet; batch: the same calls from a loop over batches of 256")
	rounds := flag.Int("rounds", 5, "timed rounds")
	repeat := flag.Int("repeat", 1, "passes over the file per round")
	dump := flag.Bool("dump", false, "print the table after one round instead of timing")
	flag.Parse()
	packets, err := readPackets(*path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	s := &statistics{}
	var batches [][][]byte
	for i := 0; i < len(packets); i += 256 {
		j := i + 256
		if j > len(packets) {
			j = len(packets)
		}
		batches = append(batches, packets[i:j])
	}
	round := func() {
		for _, p := range packets {
			s.updateTxVirtual(p)
		}
	}
	if *mode == "batch" {
		// The Go package has no batch entry point: a batch is a loop.
		round = func() {
			for _, b := range batches {
				for _, p := range b {
					s.updateTxVirtual(p)
				}
			}
		}
	}
	round() // warm: every connection in the table
	if *dump {
		w := bufio.NewWriter(os.Stdout)
		lines := make([]string, 0, len(s.virtual))
		for c, n := range s.virtual {
			lines = append(lines, fmt.Sprintf("%d %s %s %d %d %d %d", c.Proto, c.Src, c.Dst,
				n.TxPackets, n.TxBytes, n.RxPackets, n.RxBytes))
		}
		sort.Strings(lines)
		for _, l := range lines {
			fmt.Fprintln(w, l)
		}
		w.Flush()
		return
	}
	times := make([]float64, 0, *rounds)
	for r := 0; r < *rounds; r++ {
		t := time.Now()
		for k := 0; k < *repeat; k++ {
			round()
		}
		times = append(times, float64(time.Since(t).Nanoseconds())/float64(len(packets)**repeat))
	}
	sorted := append([]float64(nil), times...)
	sort.Float64s(sorted)
	out := map[string]any{
		"impl":        "go",
		"path":        *mode,
		"packets":     len(packets) * *repeat,
		"connections": len(s.virtual),
		"rounds":      *rounds,
		"ns_median":   sorted[len(sorted)/2],
		"ns_min":      sorted[0],
	}
	json.NewEncoder(os.Stdout).Encode(out)
}
