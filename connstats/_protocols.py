"""Names for every assigned IP protocol number (IANA "Assigned Internet Protocol Numbers").

The table is written out here rather than read from ``/etc/protocols`` or
``socket.getprotobynumber``: those differ between systems (and are missing on
some), and output must not depend on the machine that prints it.

Each entry is (number, IANA keyword, IANA description); ``-`` stands for the
numbers IANA assigns to a class of protocols without a keyword.  Short names
for output are the keywords in lower case, except where connstats has its own
name: 58 is ``icmpv6`` (Wireshark's name, not the keyword ``IPv6-ICMP``), 99
(any private encryption scheme) is ``tsmp`` (Tailscale's use of it), and 255
(reserved) is ``fragment``: the counting core files later IP fragments under
it.  Unassigned numbers (146-252) are ``proto-N``.
"""

from __future__ import annotations

#: (number, IANA keyword, IANA description)
IANA_PROTOCOLS: tuple[tuple[int, str, str], ...] = (
    (0, "HOPOPT", "IPv6 Hop-by-Hop Option"),
    (1, "ICMP", "Internet Control Message"),
    (2, "IGMP", "Internet Group Management"),
    (3, "GGP", "Gateway-to-Gateway"),
    (4, "IPv4", "IPv4 encapsulation"),
    (5, "ST", "Stream"),
    (6, "TCP", "Transmission Control"),
    (7, "CBT", "CBT"),
    (8, "EGP", "Exterior Gateway Protocol"),
    (9, "IGP", "any private interior gateway"),
    (10, "BBN-RCC-MON", "BBN RCC Monitoring"),
    (11, "NVP-II", "Network Voice Protocol"),
    (12, "PUP", "PUP"),
    (13, "ARGUS", "ARGUS"),
    (14, "EMCON", "EMCON"),
    (15, "XNET", "Cross Net Debugger"),
    (16, "CHAOS", "Chaos"),
    (17, "UDP", "User Datagram"),
    (18, "MUX", "Multiplexing"),
    (19, "DCN-MEAS", "DCN Measurement Subsystems"),
    (20, "HMP", "Host Monitoring"),
    (21, "PRM", "Packet Radio Measurement"),
    (22, "XNS-IDP", "XEROX NS IDP"),
    (23, "TRUNK-1", "Trunk-1"),
    (24, "TRUNK-2", "Trunk-2"),
    (25, "LEAF-1", "Leaf-1"),
    (26, "LEAF-2", "Leaf-2"),
    (27, "RDP", "Reliable Data Protocol"),
    (28, "IRTP", "Internet Reliable Transaction"),
    (29, "ISO-TP4", "ISO Transport Protocol Class 4"),
    (30, "NETBLT", "Bulk Data Transfer Protocol"),
    (31, "MFE-NSP", "MFE Network Services Protocol"),
    (32, "MERIT-INP", "MERIT Internodal Protocol"),
    (33, "DCCP", "Datagram Congestion Control Protocol"),
    (34, "3PC", "Third Party Connect Protocol"),
    (35, "IDPR", "Inter-Domain Policy Routing Protocol"),
    (36, "XTP", "XTP"),
    (37, "DDP", "Datagram Delivery Protocol"),
    (38, "IDPR-CMTP", "IDPR Control Message Transport Proto"),
    (39, "TP++", "TP++ Transport Protocol"),
    (40, "IL", "IL Transport Protocol"),
    (41, "IPv6", "IPv6 encapsulation"),
    (42, "SDRP", "Source Demand Routing Protocol"),
    (43, "IPv6-Route", "Routing Header for IPv6"),
    (44, "IPv6-Frag", "Fragment Header for IPv6"),
    (45, "IDRP", "Inter-Domain Routing Protocol"),
    (46, "RSVP", "Reservation Protocol"),
    (47, "GRE", "Generic Routing Encapsulation"),
    (48, "DSR", "Dynamic Source Routing Protocol"),
    (49, "BNA", "BNA"),
    (50, "ESP", "Encap Security Payload"),
    (51, "AH", "Authentication Header"),
    (52, "I-NLSP", "Integrated Net Layer Security TUBA"),
    (53, "SWIPE", "IP with Encryption"),
    (54, "NARP", "NBMA Address Resolution Protocol"),
    (55, "Min-IPv4", "Minimal IPv4 Encapsulation"),
    (56, "TLSP", "Transport Layer Security Protocol using Kryptonet key management"),
    (57, "SKIP", "SKIP"),
    (58, "IPv6-ICMP", "ICMP for IPv6"),
    (59, "IPv6-NoNxt", "No Next Header for IPv6"),
    (60, "IPv6-Opts", "Destination Options for IPv6"),
    (61, "-", "any host internal protocol"),
    (62, "CFTP", "CFTP"),
    (63, "-", "any local network"),
    (64, "SAT-EXPAK", "SATNET and Backroom EXPAK"),
    (65, "KRYPTOLAN", "Kryptolan"),
    (66, "RVD", "MIT Remote Virtual Disk Protocol"),
    (67, "IPPC", "Internet Pluribus Packet Core"),
    (68, "-", "any distributed file system"),
    (69, "SAT-MON", "SATNET Monitoring"),
    (70, "VISA", "VISA Protocol"),
    (71, "IPCV", "Internet Packet Core Utility"),
    (72, "CPNX", "Computer Protocol Network Executive"),
    (73, "CPHB", "Computer Protocol Heart Beat"),
    (74, "WSN", "Wang Span Network"),
    (75, "PVP", "Packet Video Protocol"),
    (76, "BR-SAT-MON", "Backroom SATNET Monitoring"),
    (77, "SUN-ND", "SUN ND PROTOCOL-Temporary"),
    (78, "WB-MON", "WIDEBAND Monitoring"),
    (79, "WB-EXPAK", "WIDEBAND EXPAK"),
    (80, "ISO-IP", "ISO Internet Protocol"),
    (81, "VMTP", "VMTP"),
    (82, "SECURE-VMTP", "SECURE-VMTP"),
    (83, "VINES", "VINES"),
    (84, "IPTM", "Internet Protocol Traffic Manager (also TTP)"),
    (85, "NSFNET-IGP", "NSFNET-IGP"),
    (86, "DGP", "Dissimilar Gateway Protocol"),
    (87, "TCF", "TCF"),
    (88, "EIGRP", "EIGRP"),
    (89, "OSPFIGP", "OSPF"),
    (90, "Sprite-RPC", "Sprite RPC Protocol"),
    (91, "LARP", "Locus Address Resolution Protocol"),
    (92, "MTP", "Multicast Transport Protocol"),
    (93, "AX.25", "AX.25 Frames"),
    (94, "IPIP", "IP-within-IP Encapsulation Protocol"),
    (95, "MICP", "Mobile Internetworking Control Pro."),
    (96, "SCC-SP", "Semaphore Communications Sec. Pro."),
    (97, "ETHERIP", "Ethernet-within-IP Encapsulation"),
    (98, "ENCAP", "Encapsulation Header"),
    (99, "-", "any private encryption scheme"),
    (100, "GMTP", "GMTP"),
    (101, "IFMP", "Ipsilon Flow Management Protocol"),
    (102, "PNNI", "PNNI over IP"),
    (103, "PIM", "Protocol Independent Multicast"),
    (104, "ARIS", "ARIS"),
    (105, "SCPS", "SCPS"),
    (106, "QNX", "QNX"),
    (107, "A/N", "Active Networks"),
    (108, "IPComp", "IP Payload Compression Protocol"),
    (109, "SNP", "Sitara Networks Protocol"),
    (110, "Compaq-Peer", "Compaq Peer Protocol"),
    (111, "IPX-in-IP", "IPX in IP"),
    (112, "VRRP", "Virtual Router Redundancy Protocol"),
    (113, "PGM", "PGM Reliable Transport Protocol"),
    (114, "-", "any 0-hop protocol"),
    (115, "L2TP", "Layer Two Tunneling Protocol"),
    (116, "DDX", "D-II Data Exchange (DDX)"),
    (117, "IATP", "Interactive Agent Transfer Protocol"),
    (118, "STP", "Schedule Transfer Protocol"),
    (119, "SRP", "SpectraLink Radio Protocol"),
    (120, "UTI", "UTI"),
    (121, "SMP", "Simple Message Protocol"),
    (122, "SM", "Simple Multicast Protocol"),
    (123, "PTP", "Performance Transparency Protocol"),
    (124, "ISIS-over-IPv4", "IS-IS over IPv4"),
    (125, "FIRE", "FIRE"),
    (126, "CRTP", "Combat Radio Transport Protocol"),
    (127, "CRUDP", "Combat Radio User Datagram"),
    (128, "SSCOPMCE", "SSCOPMCE"),
    (129, "IPLT", "IPLT"),
    (130, "SPS", "Secure Packet Shield"),
    (131, "PIPE", "Private IP Encapsulation within IP"),
    (132, "SCTP", "Stream Control Transmission Protocol"),
    (133, "FC", "Fibre Channel"),
    (134, "RSVP-E2E-IGNORE", "Reservation Protocol (RSVP) End-to-End Ignore"),
    (135, "Mobility-Header", "Mobility Extension Header for IPv6"),
    (136, "UDPLite", "UDP-Lite"),
    (137, "MPLS-in-IP", "MPLS-in-IP"),
    (138, "manet", "MANET Protocols"),
    (139, "HIP", "Host Identity Protocol"),
    (140, "Shim6", "Shim6 Protocol"),
    (141, "WESP", "Wrapped Encapsulating Security Payload"),
    (142, "ROHC", "Robust Header Compression"),
    (143, "Ethernet", "Ethernet"),
    (144, "AGGFRAG", "AGGFRAG encapsulation payload for ESP"),
    (145, "NSH", "Network Service Header"),
    (253, "-", "Use for experimentation and testing"),
    (254, "-", "Use for experimentation and testing"),
    (255, "Reserved", "Reserved"),
)

_OWN_NAMES = {
    58: "icmpv6",
    61: "host-internal",
    63: "local-net",
    68: "distributed-fs",
    99: "tsmp",
    114: "0-hop",
    253: "experiment-253",
    254: "experiment-254",
    255: "fragment",
}

#: number -> short name, for all 256 values.
PROTOCOL_NAMES: tuple[str, ...] = tuple(f"proto-{n}" for n in range(256))
_names = list(PROTOCOL_NAMES)
for _num, _keyword, _desc in IANA_PROTOCOLS:
    _names[_num] = _OWN_NAMES.get(_num, _keyword.lower())
PROTOCOL_NAMES = tuple(_names)
del _names

#: short name (and IANA keyword, lower case) -> number, for --proto.
PROTOCOL_NUMBERS: dict[str, int] = {}
for _num, _keyword, _desc in IANA_PROTOCOLS:
    if _keyword != "-":
        PROTOCOL_NUMBERS[_keyword.lower()] = _num
for _num, _name in enumerate(PROTOCOL_NAMES):
    PROTOCOL_NUMBERS[_name] = _num
PROTOCOL_NUMBERS["ipv6-icmp"] = 58
PROTOCOL_NUMBERS["ospf"] = 89
PROTOCOL_NUMBERS["ttp"] = 84


def protocol_name(number: int) -> str:
    """``tcp``, ``gre``, ``ospfigp``, ``proto-200``: the short name of an IP protocol number."""
    return PROTOCOL_NAMES[number] if 0 <= number < 256 else f"proto-{number}"


def protocol_number(text: str) -> int:
    """The number for a name (``tcp``, ``GRE``, ``ospf``) or a number 0-255 (``47``)."""
    key = text.strip().lower()
    if key.isdigit():
        value = int(key)
        if value < 256:
            return value
        raise ValueError(f"{text!r}: an IP protocol number is 0 to 255")
    if key in PROTOCOL_NUMBERS:
        return PROTOCOL_NUMBERS[key]
    raise ValueError(
        f"{text!r} is not an IP protocol name or number (examples: tcp, udp, gre, 47)"
    )


#: Tunnels ``--decap`` and :func:`connstats.decap` open, by name: bits of the
#: mask the decapsulation code takes (the TUNNEL_* constants of the cores).
TUNNELS: dict[str, int] = {
    "vxlan": 1,  # VXLAN (UDP 4789 and Linux's 8472), VXLAN-GPE (4790)
    "geneve": 2,  # Geneve (UDP 6081)
    "gre": 4,  # GRE (IP protocol 47), ERSPAN I/II/III included
    "ipip": 8,  # IP in IP: 4in4, 6in4, 4in6, 6in6 (protocols 4 and 41)
    "mpls": 16,  # MPLS over UDP (6635)
}
ALL_TUNNELS = 31


def tunnel_mask(tunnels: object = None) -> int:
    """The mask of ``tunnels``: None (all), names (``"vxlan,gre"``, or an
    iterable of names) or a mask already."""
    if tunnels is None:
        return ALL_TUNNELS
    if isinstance(tunnels, bool):
        raise TypeError("tunnels: expected names or None, got bool")
    if isinstance(tunnels, int):
        if not 0 <= tunnels <= ALL_TUNNELS:
            raise ValueError(f"tunnels: {tunnels} is not a set of tunnel kinds")
        return tunnels
    if isinstance(tunnels, str):
        names = [n for n in tunnels.split(",") if n.strip()]
    else:
        try:
            names = list(tunnels)  # type: ignore[call-overload]
        except TypeError:
            raise TypeError(
                f"tunnels: expected names or None, got {type(tunnels).__name__}"
            ) from None
    mask = 0
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"tunnels: expected names, got {type(name).__name__}")
        key = name.strip().lower()
        if key == "all":
            mask |= ALL_TUNNELS
        elif key in TUNNELS:
            mask |= TUNNELS[key]
        else:
            raise ValueError(
                f"tunnels: unknown tunnel {name!r} (known: {', '.join(TUNNELS)}, all)"
            )
    return mask
