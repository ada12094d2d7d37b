namespace VirtioSharp.Spec.Net;

/// <summary>
/// <c>struct virtio_net_config</c> (virtio 1.2 §5.1.4): field offsets and sizes. Every field is little endian.
/// </summary>
public static class NetConfig
{
    /// <summary>mac[6] (valid with NET_MAC).</summary>
    public const int MacOffset = 0;
    /// <summary>le16 status (valid with NET_STATUS): <see cref="NetStatus"/>.</summary>
    public const int StatusOffset = 6;
    /// <summary>le16 max_virtqueue_pairs (valid with NET_MQ).</summary>
    public const int MaxVirtqueuePairsOffset = 8;
    /// <summary>le16 mtu (valid with NET_MTU).</summary>
    public const int MtuOffset = 10;
    /// <summary>The config bytes this library's device exposes (mac, status, max_virtqueue_pairs, mtu).</summary>
    public const int Size = 12;
    /// <summary>Bytes of a MAC address.</summary>
    public const int MacLength = 6;
    /// <summary>max_virtqueue_pairs' range with MQ (§5.1.4: 1 to 0x8000).</summary>
    public const int MaxQueuePairs = 0x8000;
    /// <summary>The smallest MTU a device may report (§5.1.4.1: 68).</summary>
    public const int MinMtu = 68;
    /// <summary>Ethernet header bytes (destination, source, EtherType).</summary>
    public const int EthHeaderLength = 14;
    /// <summary>An 802.1Q tag's bytes, allowed on top of the MTU.</summary>
    public const int VlanHeaderLength = 4;
    /// <summary>The largest frame any virtio-net packet can carry (64 KiB of IP plus the link headers).</summary>
    public const int MaxFrameLength = 65535 + EthHeaderLength + VlanHeaderLength;
}
