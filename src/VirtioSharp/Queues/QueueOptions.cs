using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>Negotiated ring options for a queue.</summary>
public sealed record QueueOptions
{
    /// <summary>VIRTIO_F_EVENT_IDX: notification suppression through used_event / avail_event (§2.7.7).</summary>
    public bool EventIdx { get; init; }
    /// <summary>VIRTIO_F_INDIRECT_DESC: indirect descriptor tables (§2.7.5.3).</summary>
    public bool IndirectDesc { get; init; }
    /// <summary>Memory barriers around ring accesses: SMP (host-side peers) or platform (ORDER_PLATFORM).</summary>
    public BarrierKind Barriers { get; init; } = BarrierKind.Smp;
    /// <summary>
    /// Driver side only: a simulated platform's model of the CPU's store buffer that the queue reports its barriers and
    /// ring memory to (null in production: the queue fences directly).
    /// </summary>
    public Memory.ICpuOrdering? Ordering { get; init; }
    /// <summary>Legacy layout: one contiguous block, used ring at this alignment (0 = modern layout).</summary>
    public ulong LegacyAlign { get; init; }
    /// <summary>Byte order of ring fields (legacy big-endian guests, §2.7 legacy interface).</summary>
    public Spec.RingEndian Endian { get; init; } = Spec.RingEndian.Little;
    /// <summary>Entries in each driver indirect table (chains longer than this use direct descriptors).</summary>
    public int MaxIndirect { get; init; } = 64;
    /// <summary>Device side: the longest chain accepted, counting direct and indirect descriptors (Linux vhost: 1024).</summary>
    public int MaxChainLength { get; init; } = 1024;
    /// <summary>VIRTIO_F_RING_PACKED: packed layout (§2.8) instead of split (§2.7). Chosen at construction.</summary>
    public bool Packed { get; init; }
    /// <summary>VIRTIO_F_IN_ORDER: buffers are used in the order they were made available; one used element may stand for
    /// a batch (§2.7.9, §2.8.20).</summary>
    public bool InOrder { get; init; }
    /// <summary>VIRTIO_F_NOTIFICATION_DATA: driver notifications carry the next offset and wrap counter (§2.9).</summary>
    public bool NotificationData { get; init; }

    /// <summary>Options as the negotiated <paramref name="features"/> imply, with <paramref name="barriers"/>.</summary>
    public static QueueOptions FromFeatures(ulong features, BarrierKind barriers = BarrierKind.Smp) => new()
    {
        EventIdx = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.EventIdx),
        IndirectDesc = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.IndirectDesc),
        Packed = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.RingPacked),
        InOrder = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.InOrder),
        NotificationData = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.NotificationData),
        Barriers = barriers,
    };

    /// <summary>
    /// A device's options for the negotiated <paramref name="features"/>: platform barriers when VIRTIO_F_ORDER_PLATFORM
    /// was negotiated (virtio 1.2 §6: the device side orders its ring accesses for the platform too), else SMP.
    /// </summary>
    public static QueueOptions ForDevice(ulong features) =>
        FromFeatures(features, Spec.VirtioFeature.Has(features, Spec.VirtioFeature.OrderPlatform) ? BarrierKind.Platform : BarrierKind.Smp);
}
