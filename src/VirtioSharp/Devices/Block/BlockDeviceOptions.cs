namespace VirtioSharp.Devices.Block;

/// <summary>Shape of a virtio-blk device.</summary>
public sealed record BlockDeviceOptions
{
    public int NumQueues { get; init; } = 1;
    public ushort QueueSize { get; init; } = 256;
    /// <summary>Maximum data segments per request (0: queue size - 2, as QEMU).</summary>
    public uint SegMax { get; init; }
    /// <summary>Maximum bytes per segment (0: no limit, SIZE_MAX not offered).</summary>
    public uint SizeMax { get; init; }
    public uint BlkSize { get; init; } = 512;
    public uint MaxDiscardSectors { get; init; } = 1 << 22;
    public uint MaxDiscardSeg { get; init; } = 16;
    public uint MaxWriteZeroesSectors { get; init; } = 1 << 22;
    public uint MaxWriteZeroesSeg { get; init; } = 16;
    public string Serial { get; init; } = "virtio-sharp";
    /// <summary>Legacy-only device: no VERSION_1 (and so nothing above bit 31).</summary>
    public bool LegacyOnly { get; init; }
    public bool OfferAccessPlatform { get; init; }
    public bool OfferOrderPlatform { get; init; }
    public bool OfferIndirect { get; init; } = true;
    public bool OfferEventIdx { get; init; } = true;
    /// <summary>Offer VIRTIO_F_RING_PACKED (the device code is the same for both layouts).</summary>
    public bool OfferPacked { get; init; }
    /// <summary>Offer VIRTIO_F_IN_ORDER: requests complete in order anyway, so a drain returns them as one used batch.</summary>
    public bool OfferInOrder { get; init; }
}
