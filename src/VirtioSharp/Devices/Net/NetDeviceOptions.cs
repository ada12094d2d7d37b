namespace VirtioSharp.Devices.Net;

/// <summary>How a <see cref="NetDevice{TMem}"/> presents itself.</summary>
public sealed record NetDeviceOptions
{
    /// <summary>The MAC address in config (6 bytes); null: a locally administered one derived from nothing random (52:54:00:12:34:56).</summary>
    public byte[]? Mac { get; init; }
    /// <summary>The MTU offered with NET_MTU (68 to 65535); 0: no NET_MTU, frames up to 1500 bytes of payload are expected.</summary>
    public int Mtu { get; init; }
    /// <summary>Queue pairs (max_virtqueue_pairs; more than 1 offers NET_MQ).</summary>
    public int QueuePairs { get; init; } = 1;
    /// <summary>Largest size of each queue.</summary>
    public ushort QueueSize { get; init; } = 256;
    /// <summary>
    /// Whether the device has the control virtqueue (CTRL_VQ, CTRL_RX, CTRL_MAC_ADDR). A vhost-user back-end has none:
    /// QEMU serves the control queue itself and hands the back-end only the data queues.
    /// </summary>
    public bool ControlQueue { get; init; } = true;
    /// <summary>Offer the port's checksum and segmentation offloads (CSUM, GUEST_CSUM, TSO, UFO, ECN).</summary>
    public bool OfferOffloads { get; init; } = true;
    /// <summary>Offer MRG_RXBUF (frames spread over several receive buffers).</summary>
    public bool OfferMergeableRxBuffers { get; init; } = true;
    /// <summary>Offer ACCESS_PLATFORM (the device goes through the platform's IOMMU or bounce buffers).</summary>
    public bool OfferAccessPlatform { get; init; }
    /// <summary>Offer RING_PACKED.</summary>
    public bool OfferPacked { get; init; }
    /// <summary>A legacy-only device (no VERSION_1; 10-byte header without MRG_RXBUF).</summary>
    public bool LegacyOnly { get; init; }
    /// <summary>The link starts up.</summary>
    public bool LinkUp { get; init; } = true;
}
