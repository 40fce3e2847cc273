"""Link-layer types (LINKTYPE_* of the pcap/pcapng formats) and how to strip them.

Each supported link type maps to one *kind*: the small integer that the record
scanner (pure Python or Cython) switches on to find the IP header inside a
frame.  The numbers are part of the contract between ``_scan_py`` and the
compiled ``connstats.capture._capture``; ``tests/test_capture_scan.py`` checks they agree.
"""

from __future__ import annotations

# Scanner kinds: how the link header in front of the IP packet looks.
KIND_RAW = 0  # no link header: the frame is the IP packet
KIND_NULL = 1  # BSD loopback: 4-byte address family in the writer's byte order
KIND_LOOP = 2  # OpenBSD loopback: 4-byte address family, big-endian
KIND_ETHERNET = 3  # 14-byte Ethernet header, then 802.1Q/802.1ad tags
KIND_SLL = 4  # Linux "cooked" v1: 16-byte header, protocol at offset 14
KIND_SLL2 = 5  # Linux "cooked" v2: 20-byte header, protocol at offset 0
KIND_PPP = 6  # PPP: optional ff 03, then the PPP protocol (1 or 2 bytes)
KIND_PPP_HDLC = 7  # ff 03 + PPP protocol, or Cisco HDLC (0f/8f 00 + EtherType)
KIND_PPP_ETHER = 8  # PPPoE session header (6 bytes), then the PPP protocol
KIND_C_HDLC = 9  # Cisco HDLC: address, control, EtherType
KIND_IEEE802_11 = 10  # 802.11 data frames carrying LLC/SNAP
KIND_RADIOTAP = 11  # radiotap header (its own length), then 802.11
KIND_NFLOG = 12  # Linux NFLOG: 4-byte header, TLVs, the payload TLV is IP
KIND_PFLOG = 13  # OpenBSD pflog: header of its own length, address family
KIND_ENC = 14  # OpenBSD enc: 12-byte header, family in host byte order
KIND_IPNET = 15  # Solaris ipnet: 24-byte header, family at offset 1
KIND_FRELAY = 16  # Frame Relay: Q.922 address, control 03, NLPID
KIND_SLIP = 17  # SLIP with the 16-byte BSD/OS header
KIND_UNSUPPORTED = 255  # packets on such an interface are skipped and counted

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_KINDS: dict[int, int] = {
    LINKTYPE_NULL: KIND_NULL,
    LINKTYPE_ETHERNET: KIND_ETHERNET,
    # 12 and 14 are the DLT_RAW values that some old systems wrote into
    # files before LINKTYPE_RAW (101) was split off from the DLT numbers.
    12: KIND_RAW,
    14: KIND_RAW,
    LINKTYPE_RAW: KIND_RAW,
    LINKTYPE_LOOP: KIND_LOOP,
    LINKTYPE_LINUX_SLL: KIND_SLL,
    LINKTYPE_IPV4: KIND_RAW,
    LINKTYPE_IPV6: KIND_RAW,
    LINKTYPE_LINUX_SLL2: KIND_SLL2,
    8: KIND_SLIP,
    9: KIND_PPP,
    50: KIND_PPP_HDLC,
    51: KIND_PPP_ETHER,
    104: KIND_C_HDLC,
    105: KIND_IEEE802_11,
    107: KIND_FRELAY,
    109: KIND_ENC,
    117: KIND_PFLOG,
    127: KIND_RADIOTAP,
    226: KIND_IPNET,
    239: KIND_NFLOG,
}

#: Names as libpcap spells them (without the LINKTYPE_ prefix), for messages.
#: Includes common unsupported types so that the error can name them.
LINKTYPE_NAMES: dict[int, str] = {
    0: "NULL",
    1: "EN10MB",
    6: "IEEE802_5",
    8: "SLIP",
    9: "PPP",
    10: "FDDI",
    12: "RAW",
    14: "RAW",
    50: "PPP_HDLC",
    51: "PPP_ETHER",
    101: "RAW",
    104: "C_HDLC",
    105: "IEEE802_11",
    107: "FRELAY",
    108: "LOOP",
    109: "ENC",
    113: "LINUX_SLL",
    117: "PFLOG",
    119: "PRISM_HEADER",
    127: "IEEE802_11_RADIOTAP",
    163: "IEEE802_11_AVS",
    187: "BLUETOOTH_HCI_H4",
    192: "PPI",
    195: "IEEE802_15_4_WITHFCS",
    197: "ERF",
    201: "BLUETOOTH_HCI_H4_WITH_PHDR",
    215: "IEEE802_15_4_NONASK_PHY",
    220: "USB_LINUX_MMAPPED",
    226: "IPNET",
    228: "IPV4",
    229: "IPV6",
    249: "USBPCAP",
    239: "NFLOG",
    253: "NETLINK",
    276: "LINUX_SLL2",
    **{147 + i: f"USER{i}" for i in range(16)},
}

SUPPORTED_LINKTYPES: tuple[int, ...] = tuple(sorted(_KINDS))


def linktype_name(linktype: int) -> str:
    """``"EN10MB"`` for 1, ``"linktype 4242"`` for an unknown number."""
    name = LINKTYPE_NAMES.get(linktype)
    return name if name is not None else f"linktype {linktype}"


def describe_linktype(linktype: int) -> str:
    """``"105 (IEEE802_11)"``: the number people grep for, and a name."""
    name = LINKTYPE_NAMES.get(linktype)
    return f"{linktype} ({name})" if name else str(linktype)


def kind_of(linktype: int) -> int:
    """The scanner kind for a link type; KIND_UNSUPPORTED when there is none."""
    return _KINDS.get(linktype, KIND_UNSUPPORTED)


def supported_summary() -> str:
    """One line listing the supported link types, for error messages."""
    seen: list[str] = []
    for lt in SUPPORTED_LINKTYPES:
        text = describe_linktype(lt)
        if text not in seen:
            seen.append(text)
    return ", ".join(seen)
