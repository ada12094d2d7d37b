using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>A guest-physical buffer the driver hands to a queue.</summary>
public readonly record struct BufferSegment(ulong Gpa, uint Length);

/// <summary>Outcome of a queue operation on a hot path.</summary>
public enum QueueStatus : byte
{
    Ok = 0,
    /// <summary>Nothing to take (no used buffers for the driver, no available chains for the device).</summary>
    Empty,
    /// <summary>Not enough free descriptors; retry after completions.</summary>
    NoSpace,
    /// <summary>A DMA mapping failed; see the DMA status. Nothing was added.</summary>
    MapFailed,
    /// <summary>The peer broke a ring rule; the queue is now broken (see the error) and stays so until reset.</summary>
    Broken,
}

/// <summary>Ring rule violations, named for what the peer did.</summary>
public enum QueueError : byte
{
    None = 0,
    // Device side: the driver's rings are malformed.
    AvailIndexTooFarAhead,
    HeadOutOfRange,
    NextOutOfRange,
    ChainLoop,
    ChainTooLong,
    NestedIndirect,
    IndirectWithNext,
    IndirectNotAtHead,
    IndirectBadLength,
    ReadableAfterWritable,
    ChainTooManyBytes,
    AddressRefused,
    RingAccessFault,
    TooManyInFlight,
    /// <summary>Packed: the head's AVAIL/USED bits say "used in this lap", which no driver can write there (§2.8.1).</summary>
    DescriptorFlagsInconsistent,
    /// <summary>Packed: a descriptor after the head is not available under the wrap counter of its slot (§2.8.6).</summary>
    ChainDescriptorNotAvailable,
    /// <summary>Packed: a buffer id made available again while still outstanding (§2.8.5).</summary>
    BufferIdInUse,
    // Driver side: the device's used ring is malformed.
    UsedIndexTooFarAhead,
    UsedIdOutOfRange,
    UsedIdNotOutstanding,
    UsedLengthTooLarge,
    /// <summary>IN_ORDER split: a batch element covers more buffers than the used idx advanced by (§2.7.9).</summary>
    UsedBatchPastIndex,
}

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

/// <summary>Thrown at API boundaries when a queue is used wrongly by its own caller (not by the peer).</summary>
public sealed class VirtqueueException(string message) : InvalidOperationException(message);

/// <summary>
/// Device-side hooks that record which chains are in flight somewhere that survives the device process
/// (vhost-user.rst "Inflight I/O tracking", split layout): popped, about to be used, used.
/// </summary>
public interface IInflightLog
{
    void Popped(ushort head);
    /// <summary>Before the used element is written: this head is the batch in progress.</summary>
    void Using(ushort head);
    /// <summary>After used idx was published.</summary>
    void Used(ushort head, ushort usedIdx);
}

/// <summary>
/// Device-side hooks for the packed layout of vhost-user.rst "Inflight I/O tracking": a packed ring overwrites available
/// descriptors with used ones, so the log keeps a copy of each chain's ring descriptors. Using, Publishing and Committed
/// bracket the flags store that makes a used descriptor visible, so a restarted device can tell whether it happened.
/// </summary>
public interface IPackedInflightLog
{
    /// <summary>A chain was popped and validated; returns the log entry that now stands for it.</summary>
    ushort Popped(DescriptorChain chain);
    /// <summary>The chain recorded at <paramref name="entry"/> joins the used batch about to be published.</summary>
    void Using(ushort entry);
    /// <summary>Before the used descriptor's flags store: the device's next used offset and wrap counter after it.</summary>
    void Publishing(int nextUsed, bool usedWrap);
    /// <summary>After the flags store: the batch is visible to the driver.</summary>
    void Committed();
}

/// <summary>A chain an inflight log recorded before a restart: its log entry, pop order and ring descriptors.</summary>
public readonly record struct RecordedChain(ushort Entry, ulong Counter, Spec.PackedDesc[] Descriptors);
