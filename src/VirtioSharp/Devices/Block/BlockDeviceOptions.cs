namespace VirtioSharp.Devices.Block;

/// <summary>Shape of a virtio-blk device.</summary>
public sealed record BlockDeviceOptions
{
    /// <summary>Request queues, 1 to 64 (num_queues; more than 1 offers VIRTIO_BLK_F_MQ, §5.2.3).</summary>
    public int NumQueues { get; init; } = 1;
    /// <summary>Largest size offered for each queue.</summary>
    public ushort QueueSize { get; init; } = 256;
    /// <summary>Maximum data segments per request (0: queue size - 2, as QEMU).</summary>
    public uint SegMax { get; init; }
    /// <summary>Maximum bytes per segment (0: no limit, SIZE_MAX not offered).</summary>
    public uint SizeMax { get; init; }
    /// <summary>blk_size: the logical block size the guest is told about (VIRTIO_BLK_F_BLK_SIZE); at least the storage's.</summary>
    public uint BlkSize { get; init; } = 512;
    /// <summary>max_discard_sectors in the config space (VIRTIO_BLK_F_DISCARD, §5.2.4).</summary>
    public uint MaxDiscardSectors { get; init; } = 1 << 22;
    /// <summary>max_discard_seg: segments in one DISCARD request.</summary>
    public uint MaxDiscardSeg { get; init; } = 16;
    /// <summary>max_write_zeroes_sectors in the config space (VIRTIO_BLK_F_WRITE_ZEROES, §5.2.4).</summary>
    public uint MaxWriteZeroesSectors { get; init; } = 1 << 22;
    /// <summary>max_write_zeroes_seg: segments in one WRITE_ZEROES request.</summary>
    public uint MaxWriteZeroesSeg { get; init; } = 16;
    /// <summary>The id string returned for VIRTIO_BLK_T_GET_ID (truncated to 20 bytes).</summary>
    public string Serial { get; init; } = "virtio-sharp";
    /// <summary>Legacy-only device: no VERSION_1 (and so nothing above bit 31).</summary>
    public bool LegacyOnly { get; init; }
    /// <summary>Offer VIRTIO_F_ACCESS_PLATFORM (modern only): the device's DMA goes through the platform's translation.</summary>
    public bool OfferAccessPlatform { get; init; }
    /// <summary>Offer VIRTIO_F_ORDER_PLATFORM (modern only): the rings need platform-strength barriers.</summary>
    public bool OfferOrderPlatform { get; init; }
    /// <summary>Offer VIRTIO_F_INDIRECT_DESC.</summary>
    public bool OfferIndirect { get; init; } = true;
    /// <summary>Offer VIRTIO_F_EVENT_IDX.</summary>
    public bool OfferEventIdx { get; init; } = true;
    /// <summary>Offer VIRTIO_F_RING_PACKED (the device code is the same for both layouts).</summary>
    public bool OfferPacked { get; init; }
    /// <summary>Offer VIRTIO_F_IN_ORDER: requests complete in order anyway, so a drain returns them as one used batch.</summary>
    public bool OfferInOrder { get; init; }
    /// <summary>
    /// Fault injection for crash-recovery tests only (null, the default: off): hold every request this long between pop
    /// and processing, so a killed back-end leaves requests in flight (<see cref="CompletionDelayInjection"/>).
    /// </summary>
    public CompletionDelayInjection? InjectCompletionDelay { get; init; }
    /// <summary>
    /// How long a stopping queue waits for its storage requests before it gives up and sets DEVICE_NEEDS_RESET (the
    /// storage is stuck; an NBD storage fails its requests after its own reconnect timeout first).
    /// </summary>
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(60);
}
