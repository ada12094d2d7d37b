namespace VirtioSharp.Spec.Net;

/// <summary><c>virtio_net_hdr.gso_type</c> (virtio 1.2 §5.1.6): the segmentation the packet needs, plus the ECN bit.</summary>
public static class NetGsoType
{
    /// <summary>VIRTIO_NET_HDR_GSO_NONE: not a GSO frame.</summary>
    public const byte None = 0;
    /// <summary>VIRTIO_NET_HDR_GSO_TCPV4.</summary>
    public const byte TcpV4 = 1;
    /// <summary>VIRTIO_NET_HDR_GSO_UDP (UFO).</summary>
    public const byte Udp = 3;
    /// <summary>VIRTIO_NET_HDR_GSO_TCPV6.</summary>
    public const byte TcpV6 = 4;
    /// <summary>VIRTIO_NET_HDR_GSO_UDP_L4 (USO).</summary>
    public const byte UdpL4 = 5;
    /// <summary>VIRTIO_NET_HDR_GSO_ECN: TCP with ECN (ORed into the type).</summary>
    public const byte Ecn = 0x80;
}
