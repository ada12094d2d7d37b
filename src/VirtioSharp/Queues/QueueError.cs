namespace VirtioSharp.Queues;

/// <summary>Ring rule violations, named for what the peer did.</summary>
public enum QueueError : byte
{
    /// <summary>No error: the queue works.</summary>
    None = 0,
    // Device side: the driver's rings are malformed.
    /// <summary>avail idx moved more than the queue size past the next index the device expected.</summary>
    AvailIndexTooFarAhead,
    /// <summary>A head index from the avail ring is not below the queue size.</summary>
    HeadOutOfRange,
    /// <summary>A descriptor's next index is not below the queue (or indirect table) size.</summary>
    NextOutOfRange,
    /// <summary>The chain has more links than the table has descriptors, so it loops.</summary>
    ChainLoop,
    /// <summary>The chain has more descriptors than the queue size or <see cref="QueueOptions.MaxChainLength"/> allows.</summary>
    ChainTooLong,
    /// <summary>An indirect table contains an INDIRECT descriptor (§2.7.5.3.1).</summary>
    NestedIndirect,
    /// <summary>A descriptor has both INDIRECT and NEXT set (§2.7.5.3.1).</summary>
    IndirectWithNext,
    /// <summary>An indirect descriptor is not the head of its chain.</summary>
    IndirectNotAtHead,
    /// <summary>An indirect table's length is zero or not a multiple of the descriptor size (§2.7.5.3.1).</summary>
    IndirectBadLength,
    /// <summary>A driver-readable descriptor follows a device-writable one (§2.7.4.2).</summary>
    ReadableAfterWritable,
    /// <summary>The chain describes more than 4 GiB.</summary>
    ChainTooManyBytes,
    /// <summary>The DMA translation refused a buffer or ring address (unmapped, not permitted, protected).</summary>
    AddressRefused,
    /// <summary>Reading or writing the ring itself faulted.</summary>
    RingAccessFault,
    /// <summary>More chains are outstanding than the ring has entries.</summary>
    TooManyInFlight,
    /// <summary>Packed: the head's AVAIL/USED bits say "used in this lap", which no driver can write there (§2.8.1).</summary>
    DescriptorFlagsInconsistent,
    /// <summary>Packed: a descriptor after the head is not available under the wrap counter of its slot (§2.8.6).</summary>
    ChainDescriptorNotAvailable,
    /// <summary>A buffer id (packed, §2.8.5) or a head (split) made available again while still outstanding.</summary>
    BufferIdInUse,
    // Driver side: the device's used ring is malformed.
    /// <summary>Driver side: used idx moved more than the queue size past the last used index seen.</summary>
    UsedIndexTooFarAhead,
    /// <summary>Driver side: a used element names an id not below the queue size.</summary>
    UsedIdOutOfRange,
    /// <summary>Driver side: a used element names a buffer the driver did not make available (or already got back).</summary>
    UsedIdNotOutstanding,
    /// <summary>Driver side: a used length exceeds the buffer's device-writable bytes.</summary>
    UsedLengthTooLarge,
    /// <summary>IN_ORDER split: a batch element covers more buffers than the used idx advanced by (§2.7.9).</summary>
    UsedBatchPastIndex,
}
