namespace VirtioSharp.VhostUser.Frontend;

/// <summary>How a <see cref="VhostUserFrontend"/> lays out and shares its memory.</summary>
public sealed record VhostUserFrontendOptions
{
    /// <summary>Bytes of guest RAM (private in bounce-only mode).</summary>
    public ulong MemorySize { get; init; } = 64UL << 20;
    /// <summary>Queues to set up at most (the back-end may offer fewer).</summary>
    public int MaxQueues { get; init; } = 8;
    /// <summary>
    /// Bounce-only sharing (a real protected guest, the 2018 RFC's swiotlb hook): when non-zero, the memory table holds
    /// only a separate window of this many bytes (rings, indirect tables and the bounce pool), and every buffer is copied
    /// through the pool by bounce DMA ops. The back-end cannot map the rest. 0 (default): all RAM is shared, direct ops.
    /// </summary>
    public ulong SharedWindowSize { get; init; }
    /// <summary>Bytes of the window given to the bounce pool (the rest holds rings); default: half the window.</summary>
    public ulong BouncePoolSize { get; init; }
    /// <summary>
    /// The front-end as the device's IOMMU: when set, ACCESS_PLATFORM is negotiated, the driver gets IOMMU ops over a
    /// <see cref="VhostIommuDomain"/> that invalidates strictly or lazily, and the back-end learns translations only by
    /// IOTLB MISS / UPDATE (it needs BACKEND_REQ and REPLY_ACK). Null (default): no IOMMU, guest-physical addresses.
    /// Not combined with <see cref="SharedWindowSize"/>.
    /// </summary>
    public Dma.InvalidationMode? Iommu { get; init; }
    /// <summary>
    /// Ask the back-end to log every write to guest memory, as QEMU does while it migrates (a LOG_SHMFD log set with
    /// SET_LOG_BASE, VHOST_F_LOG_ALL with the features): to measure what logging costs, or to check it. The back-end
    /// must offer both.
    /// </summary>
    public bool DirtyLog { get; init; }
}
