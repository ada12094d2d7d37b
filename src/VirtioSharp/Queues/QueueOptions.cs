using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>Negotiated ring options for a queue.</summary>
public sealed record QueueOptions
{
    public bool EventIdx { get; init; }
    public bool IndirectDesc { get; init; }
    public BarrierKind Barriers { get; init; } = BarrierKind.Smp;
    /// <summary>Legacy layout: one contiguous block, used ring at this alignment (0 = modern layout).</summary>
    public ulong LegacyAlign { get; init; }
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

    public static QueueOptions FromFeatures(ulong features, BarrierKind barriers = BarrierKind.Smp) => new()
    {
        EventIdx = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.EventIdx),
        IndirectDesc = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.IndirectDesc),
        Packed = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.RingPacked),
        InOrder = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.InOrder),
        NotificationData = Spec.VirtioFeature.Has(features, Spec.VirtioFeature.NotificationData),
        Barriers = barriers,
    };
}
