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
    /// <summary>
    /// With <see cref="Iommu"/>: a page the driver mapped device-writable is answered readable too. DPDK's vhost library
    /// asks for read and write on every receive buffer (its enqueue path translates them with VHOST_ACCESS_RW), so
    /// without this it never gets a translation for one and drops every frame for the driver. Off (default): each page
    /// has only the permission its direction needs; on weakens that as VT-d without zero-length-read support does
    /// (Linux's intel-iommu then grants read with every write), letting the device read what it will overwrite.
    /// </summary>
    public bool IommuWritableImpliesReadable { get; init; }
    /// <summary>
    /// The device's config space when the back-end does not serve one (it offers no VHOST_USER_PROTOCOL_F_CONFIG, as
    /// DPDK's vhost does not): the front-end then answers the driver's config reads itself, as QEMU does (at most 256
    /// bytes). Null: zeros, or for a network device a unicast MAC (52:54:00:12:34:57) with the link up and one queue pair.
    /// </summary>
    public byte[]? DeviceConfig { get; init; }
    /// <summary>
    /// Where the front-end says what it shares once connected (all RAM, only the bounce window, or IOVAs it translates
    /// as the IOMMU) and where the driver's DMA decision goes when it probes on <see cref="VhostUserFrontend.Environment"/>:
    /// the features offered, every policy reason, the decision and the ops, as <c>virtio-sharp explain --connect</c>
    /// prints them. Null (default): nothing is logged.
    /// </summary>
    public Microsoft.Extensions.Logging.ILogger? Logger { get; init; }
    /// <summary>
    /// The longest the front-end waits for the back-end to take a request off the socket and, for one with a reply, to
    /// answer it (5 s by default, as the back-end's <c>VhostUserBackendOptions.ReplyTimeout</c>). Past it the request
    /// fails with an error naming it and the connection is closed: a back-end that is stopped, hung or busy elsewhere
    /// cannot stall <see cref="VhostUserFrontend.Connect(string, Spec.DeviceId, VhostUserFrontendOptions)"/> or a
    /// driver forever. Must be positive.
    /// </summary>
    public TimeSpan ReplyTimeout { get; init; } = TimeSpan.FromSeconds(5);
}
