// An independent oracle for connstats.export.netlog.dumps (tests/test_netlog.py).
//
// It reads one message per line in a neutral JSON form (every string
// ASCII-escaped by Python's json module, endpoints as [address or "", port],
// rows as [proto, src, dst, txPkts, txBytes, rxPkts, rxBytes]), builds the
// Go values of the network-log message and writes them with encoding/json,
// one line each.  The structs have the JSON names and field order of
// Tailscale's netlogtype.Message.  Go before 1.24 has no "omitzero", so it is
// spelled out: "omitempty" on numbers, strings and slices (which omitzero and
// omitempty treat alike) and nil pointers for a zero netip.AddrPort or Node.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"time"
)

type node struct {
	NodeID    string       `json:"nodeId"`
	Name      string       `json:"name,omitempty"`
	Addresses []netip.Addr `json:"addresses,omitempty"`
	OS        string       `json:"os,omitempty"`
	User      string       `json:"user,omitempty"`
	Tags      []string     `json:"tags,omitempty"`
}

type connectionCounts struct {
	Proto     uint8           `json:"proto,omitempty"`
	Src       *netip.AddrPort `json:"src,omitempty"`
	Dst       *netip.AddrPort `json:"dst,omitempty"`
	TxPackets uint64          `json:"txPkts,omitempty"`
	TxBytes   uint64          `json:"txBytes,omitempty"`
	RxPackets uint64          `json:"rxPkts,omitempty"`
	RxBytes   uint64          `json:"rxBytes,omitempty"`
}

type message struct {
	NodeID          string             `json:"nodeId"`
	Start           time.Time          `json:"start"`
	End             time.Time          `json:"end"`
	SrcNode         *node              `json:"srcNode,omitempty"`
	DstNodes        []node             `json:"dstNodes,omitempty"`
	VirtualTraffic  []connectionCounts `json:"virtualTraffic,omitempty"`
	SubnetTraffic   []connectionCounts `json:"subnetTraffic,omitempty"`
	ExitTraffic     []connectionCounts `json:"exitTraffic,omitempty"`
	PhysicalTraffic []connectionCounts `json:"physicalTraffic,omitempty"`
}

type neutralNode struct {
	NodeID    string   `json:"nodeId"`
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	OS        string   `json:"os"`
	User      string   `json:"user"`
	Tags      []string `json:"tags"`
}

type neutral struct {
	NodeID          string           `json:"nodeId"`
	Start           time.Time        `json:"start"`
	End             time.Time        `json:"end"`
	SrcNode         *neutralNode     `json:"srcNode"`
	DstNodes        []neutralNode    `json:"dstNodes"`
	VirtualTraffic  [][7]interface{} `json:"virtualTraffic"`
	SubnetTraffic   [][7]interface{} `json:"subnetTraffic"`
	ExitTraffic     [][7]interface{} `json:"exitTraffic"`
	PhysicalTraffic [][7]interface{} `json:"physicalTraffic"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "netlog_oracle:", err)
		os.Exit(1)
	}
}

func toNode(n neutralNode) node {
	out := node{NodeID: n.NodeID, Name: n.Name, OS: n.OS, User: n.User, Tags: n.Tags}
	for _, s := range n.Addresses {
		a, err := netip.ParseAddr(s)
		must(err)
		out.Addresses = append(out.Addresses, a)
	}
	return out
}

func isZero(n node) bool {
	return n.NodeID == "" && n.Name == "" && n.Addresses == nil && n.OS == "" &&
		n.User == "" && n.Tags == nil
}

func endpoint(v interface{}) *netip.AddrPort {
	pair := v.([]interface{})
	var addr netip.Addr
	if s := pair[0].(string); s != "" {
		var err error
		addr, err = netip.ParseAddr(s)
		must(err)
	}
	ap := netip.AddrPortFrom(addr, uint16(count(pair[1])))
	if ap == (netip.AddrPort{}) {
		return nil // omitzero
	}
	return &ap
}

func count(v interface{}) uint64 {
	var n uint64
	_, err := fmt.Sscan(string(v.(json.Number)), &n)
	must(err)
	return n
}

func rows(in [][7]interface{}) []connectionCounts {
	var out []connectionCounts
	for _, r := range in {
		out = append(out, connectionCounts{
			Proto: uint8(count(r[0])), Src: endpoint(r[1]), Dst: endpoint(r[2]),
			TxPackets: count(r[3]), TxBytes: count(r[4]),
			RxPackets: count(r[5]), RxBytes: count(r[6]),
		})
	}
	return out
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		var n neutral
		dec := json.NewDecoder(bytes.NewReader(in.Bytes()))
		dec.UseNumber()
		must(dec.Decode(&n))
		m := message{
			NodeID: n.NodeID, Start: n.Start.UTC(), End: n.End.UTC(),
			VirtualTraffic: rows(n.VirtualTraffic), SubnetTraffic: rows(n.SubnetTraffic),
			ExitTraffic: rows(n.ExitTraffic), PhysicalTraffic: rows(n.PhysicalTraffic),
		}
		if n.SrcNode != nil {
			if src := toNode(*n.SrcNode); !isZero(src) {
				m.SrcNode = &src
			}
		}
		for _, d := range n.DstNodes {
			m.DstNodes = append(m.DstNodes, toNode(d))
		}
		b, err := json.Marshal(m)
		must(err)
		out.Write(b)
		out.WriteByte('\n')
	}
	must(in.Err())
}
